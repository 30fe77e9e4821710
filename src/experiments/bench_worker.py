"""One measured training run for `experiments bench`, in its own process (fresh memory peak).

`python -m experiments.bench_worker framework|loop '<workload json>'` prints one JSON line.
Both paths train the same model on the same data (same split, same seeded batch order, same init).
"""

from __future__ import annotations

import json
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, ClassVar

from experiments.speedups import pause_gc_for_startup

if __name__ == "__main__" and sys.argv[1:2] == ["framework"]:
    pause_gc_for_startup()  # as `experiments train` starts (train() resumes it when fitting starts)

import lightning.pytorch as pl


class FitTimer(pl.Callback):
    """Times the training phase (all epochs, with their validation) of the framework path."""

    last: ClassVar[dict[str, float]] = {}  # read by the worker after fitting

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = time.perf_counter()
        self._cpu_start = time.process_time()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # The last epoch's end (its validation included) closes the training phase; what follows
        # (final plots, model logging) is wrap-up, reported separately by the fixed-cost figures.
        FitTimer.last = {"seconds": time.perf_counter() - self._start, "steps": float(trainer.global_step),
                         "cpu_seconds": time.process_time() - self._cpu_start,
                         "fused_optimizer": float(bool(trainer.optimizers[0].defaults["fused"]))}


def _overrides(workload: dict[str, Any], output_dir: Path) -> list[str]:
    hidden = ",".join(str(w) for w in workload["hidden_dims"])
    return [
        f"paths.output_dir={output_dir}",
        f"data.options.n_samples={workload['n_samples']}",
        f"data.options.n_features={workload['n_features']}",
        f"data.batch_size={workload['batch_size']}",
        f"model.hidden_dims=[{hidden}]",
        f"trainer.max_epochs={workload['epochs']}",
        f"seed={workload['seed']}",
        f"threads={workload['threads']}",
        "callbacks.progress_bar=null",
        "trainer.enable_progress_bar=false",
        "+callbacks.bench_timer._target_=experiments.bench_worker.FitTimer",
        *workload.get("overrides", []),
    ]


def compose(workload: dict[str, Any], output_dir: Path) -> Any:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from experiments.paths import config_dir, register_resolvers

    register_resolvers()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = hydra_compose("train", overrides=_overrides(workload, output_dir), return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(output_dir / "run")
        cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)
    return cfg


def run_framework(workload: dict[str, Any]) -> dict[str, float]:
    """The real `experiments train` path: default callbacks, metrics, MLflow logging to a temp store."""
    import contextlib
    import io

    from experiments.train import train

    with tempfile.TemporaryDirectory() as tmp:
        cfg = compose(workload, Path(tmp))
        with contextlib.redirect_stdout(io.StringIO()):
            metrics = train(cfg)
    # The class the config instantiated (module experiments.bench_worker), not this __main__'s copy.
    from experiments.bench_worker import FitTimer as Timer

    return {**Timer.last, "final_loss": metrics["train/objective"]}


def run_loop(workload: dict[str, Any]) -> dict[str, float]:
    """A hand-written loop as a careful PyTorch user writes it: batch indexing of in-memory tensors,
    zero_grad(set_to_none=True), a validation loss per epoch, the same thread count."""
    import torch
    import torch.nn.functional as F
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from experiments.models.mlp import build_mlp
    from experiments.models.optim import optimizer_factory
    from experiments.sizing import apply_threads, choose_threads

    with tempfile.TemporaryDirectory() as tmp:
        cfg = compose(workload, Path(tmp))
    pl.seed_everything(workload["seed"], verbose=False)
    data = instantiate(cfg.data, _convert_="all")
    x, y = data.tensors("train").tensors
    x_val, y_val = data.tensors("val").tensors
    net = build_mlp(x.shape[1], 1, workload["hidden_dims"])
    apply_threads(choose_threads(workload["threads"], sum(p.numel() for p in net.parameters()), workload["batch_size"]))
    # The framework's optimizer as configured (Adam, lr 1e-3, its fused kernel where there is one), so
    # the comparison measures what the framework adds around the same arithmetic.
    optimizer = optimizer_factory(OmegaConf.to_container(cfg.optimizer, resolve=True))(net.parameters())
    batch = workload["batch_size"]
    steps, start, cpu_start = 0, time.perf_counter(), time.process_time()
    for epoch in range(workload["epochs"]):
        net.train()
        total = torch.zeros(())
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(workload["seed"] + epoch))
        for index in order.split(batch):
            loss = F.binary_cross_entropy_with_logits(net(x[index]).squeeze(-1), y[index].float())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach()
            steps += 1
        net.eval()
        with torch.no_grad():
            F.binary_cross_entropy_with_logits(net(x_val).squeeze(-1), y_val.float()).item()
        final_loss = float(total) / len(order.split(batch))
    return {"seconds": time.perf_counter() - start, "steps": float(steps), "final_loss": final_loss,
            "cpu_seconds": time.process_time() - cpu_start, "fused_optimizer": float(bool(optimizer.defaults["fused"]))}


def main() -> None:
    path, workload = sys.argv[1], json.loads(sys.argv[2])
    result = run_framework(workload) if path == "framework" else run_loop(workload)
    import torch

    result["threads"] = float(torch.get_num_threads())
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


if __name__ == "__main__":
    main()
