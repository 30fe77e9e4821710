"""The pieces of distributed training that need no second process: per-rank sharding of the batch sampler,
trainer presets (and the SLURM launcher that mirrors them), hardware and launch checks, data placement."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from omegaconf import OmegaConf

from experiments.data.datamodule import TabularDataModule
from experiments.data.loader import ShuffledBatches
from experiments.data.placement import should_keep_on_device
from experiments.devices import MultirunLaunchError, build_trainer, check_hardware, check_launch
from experiments.errors import UserError
from experiments.paths import config_dir
from tests.conftest import compose_train_config

TRAINER_PRESETS = sorted(p.stem for p in (config_dir() / "trainer").glob("*.yaml"))


def _shares(n: int, batch_size: int, world: int, shuffle: bool, equal_steps: bool, epoch: int = 0,
            seed: int = 3) -> list[list[torch.Tensor]]:
    shares = []
    for rank in range(world):
        sampler = ShuffledBatches(n, batch_size, shuffle, seed, num_replicas=world, rank=rank, equal_steps=equal_steps)
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler)
        shares.append(batches)
    return shares


@pytest.mark.parametrize("world", [2, 3])
@pytest.mark.parametrize(("n", "batch_size"), [(700, 32), (150, 1024), (101, 8), (5, 2)])
def test_eval_shards_cover_every_sample_exactly_once(n: int, batch_size: int, world: int) -> None:
    shares = _shares(n, batch_size, world, shuffle=False, equal_steps=False)
    seen = torch.cat([b for share in shares for b in share])
    assert sorted(seen.tolist()) == list(range(n))
    assert all(len(b) <= batch_size for share in shares for b in share)
    assert all(len(b) > 0 for share in shares for b in share)


@pytest.mark.parametrize("world", [2, 3])
@pytest.mark.parametrize(("n", "batch_size"), [(700, 32), (101, 8), (64, 32), (5, 2)])
def test_training_shards_run_equal_steps_and_see_each_sample_once_per_epoch(n: int, batch_size: int,
                                                                            world: int) -> None:
    for epoch in (0, 1):
        shares = _shares(n, batch_size, world, shuffle=True, equal_steps=True, epoch=epoch)
        assert len({len(share) for share in shares}) == 1  # DDP all-reduces every step: same count per rank
        assert all(len(b) > 0 for share in shares for b in share)
        seen = torch.cat([b for share in shares for b in share]).tolist()
        assert set(seen) == set(range(n))
        assert len(seen) - n < world  # a repeat only where the last step has fewer samples than ranks


def test_rank_orders_follow_the_seed_and_change_per_epoch() -> None:
    first = _shares(300, 16, 2, shuffle=True, equal_steps=True, seed=11)
    assert all(torch.equal(a, b) for s1, s2 in zip(first, _shares(300, 16, 2, True, True, seed=11))
               for a, b in zip(s1, s2))
    other_seed = _shares(300, 16, 2, shuffle=True, equal_steps=True, seed=12)
    next_epoch = _shares(300, 16, 2, shuffle=True, equal_steps=True, seed=11, epoch=1)
    assert not torch.equal(torch.cat(first[0]), torch.cat(other_seed[0]))
    assert not torch.equal(torch.cat(first[0]), torch.cat(next_epoch[0]))
    assert set(torch.cat(first[0]).tolist()).isdisjoint(torch.cat(first[1]).tolist())


def test_single_process_batches_are_the_plain_shuffled_batches() -> None:
    sampler = ShuffledBatches(100, 16, shuffle=True, seed=7)
    expected = torch.randperm(100, generator=torch.Generator().manual_seed(7)).split(16)
    assert all(torch.equal(a, b) for a, b in zip(sampler, expected, strict=True))


def test_every_trainer_preset_exists_and_composes(outputs: Path) -> None:
    assert {"cpu", "gpu", "ddp", "ddp_spawn", "ddp_cpu", "tpu", "mps", "multinode", "auto"} <= set(TRAINER_PRESETS)
    expected = {"ddp": ("gpu", "ddp"), "ddp_spawn": ("gpu", "ddp_spawn"), "ddp_cpu": ("cpu", "ddp"),
                "tpu": ("tpu", "auto"), "multinode": ("gpu", "ddp")}
    for preset in TRAINER_PRESETS:
        trainer = OmegaConf.to_container(compose_train_config(outputs, [f"trainer={preset}"]).trainer, resolve=True)
        assert trainer["_target_"] == "lightning.pytorch.Trainer"
        if preset in expected:
            assert (trainer["accelerator"], trainer["strategy"]) == expected[preset], preset
    assert compose_train_config(outputs, ["trainer=ddp_cpu"]).trainer.devices == 2
    assert compose_train_config(outputs, ["trainer=multinode"]).trainer.num_nodes == 2


def test_slurm_launcher_asks_for_what_the_trainer_preset_runs(outputs: Path) -> None:
    cfg = compose_train_config(outputs, ["hydra/launcher=slurm", "trainer=multinode", "trainer.num_nodes=3",
                                         "trainer.devices=8"])
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert (launcher.nodes, launcher.tasks_per_node, launcher.gpus_per_node) == (3, 8, 8)


@pytest.mark.parametrize(
    ("preset", "present", "missing"),
    [
        ("gpu", torch.cuda.is_available, "needs a CUDA GPU"),
        ("ddp", torch.cuda.is_available, "needs a CUDA GPU"),
        ("multinode", torch.cuda.is_available, "needs a CUDA GPU"),
        ("mps", torch.backends.mps.is_available, "needs an Apple-silicon GPU"),
        ("tpu", lambda: __import__("lightning.pytorch.accelerators", fromlist=["x"]).XLAAccelerator.is_available(),
         "needs TPU cores through torch_xla"),
    ],
)
def test_presets_for_absent_hardware_say_what_is_missing(outputs: Path, preset: str, present, missing: str) -> None:
    if present():
        pytest.skip(f"this machine has what trainer={preset} needs")
    with pytest.raises(UserError, match=missing):
        check_hardware(compose_train_config(outputs, [f"trainer={preset}"]).trainer)


@pytest.mark.parametrize("overrides", [["trainer=cpu"], ["trainer=ddp_cpu"], ["trainer=auto"],
                                       ["trainer=ddp_spawn", "trainer.accelerator=cpu", "trainer.devices=2"]])
def test_presets_that_run_here_pass_the_hardware_check(outputs: Path, overrides: list[str]) -> None:
    check_hardware(compose_train_config(outputs, overrides).trainer)


def test_gpu_count_beyond_the_machine_is_refused(outputs: Path) -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs a GPU to count")
    wanted = torch.cuda.device_count() + 1
    with pytest.raises(UserError, match=f"asks for {wanted} GPUs"):
        check_hardware(compose_train_config(outputs, ["trainer=gpu", f"trainer.devices={wanted}"]).trainer)


def _cpu_trainer(**kwargs) -> pl.Trainer:
    return pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_checkpointing=False,
                      **kwargs)


@pytest.fixture
def no_launcher_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TORCHELASTIC_RUN_ID", "SLURM_NTASKS", "SLURM_JOB_NAME", "NODE_RANK", "MASTER_ADDR", "WORLD_SIZE",
                 "LOCAL_RANK", "RANK"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.usefixtures("no_launcher_env")
def test_reexecuting_ddp_is_refused_in_a_multirun_and_spawn_is_not() -> None:
    with pytest.raises(MultirunLaunchError, match="sweep with trainer=ddp_spawn"):
        check_launch(_cpu_trainer(devices=2, strategy="ddp"), multirun=True)
    check_launch(_cpu_trainer(devices=2, strategy="ddp"), multirun=False)
    check_launch(_cpu_trainer(devices=2, strategy="ddp_spawn"), multirun=True)
    check_launch(_cpu_trainer(devices=1), multirun=True)


@pytest.mark.usefixtures("no_launcher_env")
def test_multinode_without_a_cluster_launcher_is_refused_instead_of_hanging() -> None:
    with pytest.raises(UserError, match="num_nodes=2 needs every node's processes started by a cluster launcher"):
        check_launch(_cpu_trainer(devices=1, num_nodes=2, strategy="ddp"), multirun=False)


@pytest.mark.usefixtures("no_launcher_env")
def test_world_size_must_match_what_torchrun_started(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"TORCHELASTIC_RUN_ID": "t", "WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0",
                        "GROUP_RANK": "0", "LOCAL_WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1",
                        "MASTER_PORT": "29500"}.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(UserError, match=r"torchrun started 2 processes, but trainer.num_nodes × trainer.devices = 1"):
        check_launch(_cpu_trainer(devices=1), multirun=False)
    check_launch(_cpu_trainer(devices=1, num_nodes=2, strategy="ddp"), multirun=False)


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_precision_choices_build_on_cpu(outputs: Path, precision: str) -> None:
    cfg = compose_train_config(outputs, [f"trainer.precision={precision}"])
    trainer = build_trainer(cfg.trainer, [], False)
    assert trainer.precision == precision


def test_unknown_precision_is_one_clear_line(outputs: Path) -> None:
    cfg = compose_train_config(outputs, ["trainer.precision=fp8"])
    with pytest.raises(UserError, match="Lightning refused the trainer config: Precision 'fp8' is invalid") as err:
        build_trainer(cfg.trainer, [], False)
    assert "\n" not in str(err.value)


def test_data_stays_on_the_host_except_on_a_gpu_with_room() -> None:
    cpu, cuda, mps = torch.device("cpu"), torch.device("cuda", 0), torch.device("mps")
    gib = 2**30
    assert not should_keep_on_device("auto", cpu, 10, None)
    assert should_keep_on_device("auto", cuda, 1 * gib, 80 * gib)
    assert not should_keep_on_device("auto", cuda, 30 * gib, 80 * gib)  # leave room for the model
    assert not should_keep_on_device(False, cuda, 10, 80 * gib)
    assert should_keep_on_device(True, mps, 10, None) and not should_keep_on_device("auto", mps, 10, None)
    with pytest.raises(UserError, match="data.keep_on_device must be auto, true or false"):
        TabularDataModule("seed_random", {"n_samples": 20}, keep_on_device="yes")


def test_datamodule_on_cpu_serves_its_host_tensors() -> None:
    dm = TabularDataModule("seed_random", {"n_samples": 60, "n_features": 3}, batch_size=8)
    trainer = _cpu_trainer(devices=1)
    dm.trainer = trainer
    dm.setup("fit")
    first = next(iter(dm.train_dataloader()))
    assert first[0].device.type == "cpu"
    assert dm.train_dataloader().dataset is dm.tensors("train")
