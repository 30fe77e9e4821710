"""Distributed training on CPU with real processes: DDP (re-executing and spawning), a two-node torchrun on
loopback, and the refusals. Each run is checked against what a user relies on: one MLflow run, metrics
equal to a single-process evaluation of the saved weights, every sample seen once per epoch across ranks
in the order the run seed dictates, one set of checkpoints."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

import lightning.pytorch as pl
import mlflow
import pandas as pd
import pytest
import torch
from hydra.utils import instantiate
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from experiments.data.loader import ShuffledBatches
from experiments.models.mlp import network_from_config
from experiments.models.module import ExperimentModule
from experiments.paths import project_root
from tests.conftest import FAST, compose_train_config, run_cli, store_uri

pytestmark = pytest.mark.e2e

EPOCHS = 2
# One intra-op thread per rank (tiny model, shared cores); `tests` importable for the sample counter.
DDP_ENV = {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(project_root())}


def _counter_overrides(counter_dir: Path) -> list[str]:
    return ["+callbacks.sample_counter._target_=tests.e2e.sample_counter.SampleCounter",
            f"+callbacks.sample_counter.out_dir={counter_dir}"]


def _only_run(outputs: Path):
    client = MlflowClient(store_uri(outputs))
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert len(runs) == 1, [(r.info.run_name, r.info.status) for r in runs]
    return client, runs[0]


def _failure(stderr: str) -> str:
    """What a failed run printed: a rank that died says why ahead of the launcher's traceback, the tail."""
    dying = [line for line in stderr.splitlines() if "terminate called" in line or "what():" in line]
    return "\n".join([*dying, stderr[-3000:]])


def _rows(x: torch.Tensor) -> Counter:
    return Counter(row.numpy().tobytes() for row in x)


def _seen(counter_dir: Path, fn: str, world_size: int) -> list[list[tuple[str, int, torch.Tensor]]]:
    files = sorted(counter_dir.glob(f"{fn}-rank*.pt"))
    assert [f.name for f in files] == [f"{fn}-rank{r}.pt" for r in range(world_size)]
    loaded = [torch.load(f, weights_only=False) for f in files]
    assert all(item["world_size"] == world_size for item in loaded)
    return [item["seen"] for item in loaded]


def _evaluate_single_process(outputs: Path, checkpoint: Path) -> dict[str, float]:
    """The saved weights evaluated by one process over the whole validation split (no DDP)."""
    cfg = compose_train_config(outputs)
    datamodule = instantiate(cfg.data, _convert_="all")
    net = network_from_config(cfg.model, datamodule.input_dim, datamodule.num_outputs)
    module = ExperimentModule(net, **datamodule.target.training_settings(),
                              optimizer=OmegaConf.to_container(cfg.optimizer, resolve=True))
    module.load_state_dict(torch.load(checkpoint, weights_only=False)["state_dict"])
    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                         enable_checkpointing=False, enable_model_summary=False)
    trainer.validate(module, datamodule=datamodule, verbose=False)
    return {k: float(v) for k, v in trainer.callback_metrics.items()}


def _assert_one_correct_distributed_run(outputs: Path, counter_dir: Path, world_size: int) -> None:
    client, run = _only_run(outputs)
    assert run.info.status == "FINISHED"

    # One set of checkpoints, in one run dir.
    checkpoints = sorted(outputs.rglob("*.ckpt"))
    assert len({c.parent for c in checkpoints}) == 1, checkpoints
    assert sorted(c.name for c in checkpoints if not c.name.startswith("best")) == ["last.ckpt"]

    # Logged metrics of the last epoch = the last checkpoint's weights evaluated over the full split.
    expected = _evaluate_single_process(outputs, next(c for c in checkpoints if c.name == "last.ckpt"))
    for key in ("val/loss", "val/acc", "val/auroc", "train/loss"):
        history = {m.step: m.value for m in client.get_metric_history(run.info.run_id, key)}
        assert sorted(history) == list(range(EPOCHS)), key
        assert history[EPOCHS - 1] == pytest.approx(expected[key], rel=1e-5, abs=1e-6), key

    # Every sample once per epoch across ranks; each rank's share in the order the run seed dictates.
    cfg = compose_train_config(outputs)
    datamodule = instantiate(cfg.data, _convert_="all")
    splits = {name: datamodule.tensors(name).tensors[0] for name in ("train", "val", "test")}
    fit = _seen(counter_dir, "fit", world_size)
    for epoch in range(EPOCHS):
        for stage, split in (("train", "train"), ("val0", "val"), ("val1", "train")):
            per_rank = [torch.cat([x for s, e, x in seen if s == stage and e == epoch]) for seen in fit]
            assert _rows(torch.cat(per_rank)) == _rows(splits[split]), (stage, epoch)
        for rank, seen in enumerate(fit):
            sampler = ShuffledBatches(len(splits["train"]), cfg.data.batch_size, shuffle=True, seed=cfg.seed,
                                      num_replicas=world_size, rank=rank)
            sampler.set_epoch(epoch)
            order = torch.cat(list(sampler))
            shown = torch.cat([x for s, e, x in seen if s == "train" and e == epoch])
            assert torch.equal(shown, splits["train"][order]), (rank, epoch)
    tested = _seen(counter_dir, "test", world_size)
    assert _rows(torch.cat([x for seen in tested for _, _, x in seen])) == _rows(splits["test"])
    assert "test/acc" in run.data.metrics


def test_ddp_cpu_reexecuting_strategy_gives_one_correct_run(tmp_path: Path, outputs: Path) -> None:
    counter_dir = tmp_path / "seen"
    result = run_cli(["train", f"paths.output_dir={outputs}", "trainer=ddp_cpu", f"trainer.max_epochs={EPOCHS}",
                      *FAST, *_counter_overrides(counter_dir)], cwd=tmp_path, env=DDP_ENV, timeout=300)
    assert result.returncode == 0, _failure(result.stderr)
    assert result.stdout.count("MLflow run:") == 1  # the summary is printed by rank 0 only
    _assert_one_correct_distributed_run(outputs, counter_dir, world_size=2)
    assert len(list((outputs / "runs").glob("*/*"))) == 1  # the child rank reused the Hydra run dir


def test_ddp_spawn_on_cpu_gives_one_correct_run(tmp_path: Path, outputs: Path) -> None:
    counter_dir = tmp_path / "seen"
    result = run_cli(["train", f"paths.output_dir={outputs}", "trainer=ddp_spawn", "trainer.accelerator=cpu",
                      "trainer.devices=2", f"trainer.max_epochs={EPOCHS}", *FAST, *_counter_overrides(counter_dir)],
                     cwd=tmp_path, env=DDP_ENV, timeout=300)
    assert result.returncode == 0, _failure(result.stderr)
    _assert_one_correct_distributed_run(outputs, counter_dir, world_size=2)
    # The model, trained in the spawned workers, is logged once by the launching process and loads.
    _, run = _only_run(outputs)
    mlflow.set_tracking_uri(store_uri(outputs))
    model = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model")
    rows = pd.DataFrame(torch.rand(3, 8).numpy(), columns=[f"x{i}" for i in range(8)])
    assert model.predict(rows).shape == (3, 3)  # prediction and two class probabilities per row
    # The learning curve, drawn by the rank-0 worker as its fit ends, reaches the run before it closes.
    client = MlflowClient(store_uri(outputs))
    assert [a.path for a in client.list_artifacts(run.info.run_id, "plots")] == ["plots/learning_curve.png"]
    # The model page shows the scores of the weights it holds: the best epoch's, tested in the workers.
    (output,) = run.outputs.model_outputs
    best_epoch = int(run.data.metrics["val/loss_best_epoch"])
    assert best_epoch > 0  # else this would not tell the best epoch from the main process's epoch 0
    assert {m.step for m in client.get_logged_model(output.model_id).metrics} == {best_epoch}


def test_ddp_spawn_without_testing_links_the_model_to_its_last_epoch(tmp_path: Path, outputs: Path) -> None:
    # Untested, the model holds the weights the workers ended with; the launching process never trained,
    # so it has to learn their epoch from the rank-0 worker (it used to link the model to epoch 0).
    result = run_cli(["train", f"paths.output_dir={outputs}", "trainer=ddp_spawn", "trainer.accelerator=cpu",
                      "trainer.devices=2", f"trainer.max_epochs={EPOCHS}", "test=false", *FAST],
                     cwd=tmp_path, env=DDP_ENV, timeout=300)
    assert result.returncode == 0, _failure(result.stderr)
    _, run = _only_run(outputs)
    (output,) = run.outputs.model_outputs
    linked = MlflowClient(store_uri(outputs)).get_logged_model(output.model_id).metrics
    assert linked and {m.step for m in linked} == {EPOCHS - 1}
    assert "test/loss" not in run.data.metrics


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_torchrun_two_nodes_on_loopback_gives_one_correct_run(tmp_path: Path, outputs: Path) -> None:
    counter_dir = tmp_path / "seen"
    port = _free_port()
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc-per-node=1",
                "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}", "--rdzv-id=test-two-nodes",
                "--local-addr=127.0.0.1", "-m", "experiments", "train"]
    # Nodes share the run dir through the command line, as on a cluster with a shared filesystem.
    args = [f"paths.output_dir={outputs}", f"hydra.run.dir={outputs}/runs/two-nodes", "trainer=multinode",
            "trainer.accelerator=cpu", "trainer.num_nodes=2", "trainer.devices=1", f"trainer.max_epochs={EPOCHS}",
            *FAST, *_counter_overrides(counter_dir)]
    env = {**os.environ, **DDP_ENV, "PYTHONUNBUFFERED": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    nodes = [subprocess.Popen([*torchrun, *args], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    try:
        outs = [node.communicate(timeout=300)[0] for node in nodes]
    finally:
        for node in nodes:
            node.kill() if node.poll() is None else None
    assert [node.returncode for node in nodes] == [0, 0], "\n=====\n".join(out[-3000:] for out in outs)
    assert sum(out.count("MLflow run:") for out in outs) == 1
    _assert_one_correct_distributed_run(outputs, counter_dir, world_size=2)


def test_multirun_with_reexecuting_ddp_is_refused_pointing_to_ddp_spawn(tmp_path: Path, outputs: Path) -> None:
    result = run_cli(["train", "-m", f"paths.output_dir={outputs}", "trainer=ddp_cpu", "seed=1,2", *FAST],
                     cwd=tmp_path, env=DDP_ENV, timeout=300)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: trainer.strategy=ddp re-executes") and "trainer=ddp_spawn" in last
    if (outputs / "mlflow.db").exists():  # no training run; a sweep's parent run, if any, is closed
        client = MlflowClient(store_uri(outputs))
        runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
        assert [r.info.run_name for r in runs if r.data.tags.get("sweep.role") != "parent"] == []
        assert all(r.info.status != "RUNNING" for r in runs)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_gpu_preset_without_a_gpu_says_what_is_missing(tmp_path: Path, outputs: Path) -> None:
    result = run_cli(["train", f"paths.output_dir={outputs}", "trainer=gpu", *FAST], cwd=tmp_path, timeout=300)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "trainer.accelerator=gpu needs a CUDA GPU" in result.stderr and "trainer=cpu" in result.stderr
