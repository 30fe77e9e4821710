"""Building the Lightning Trainer for one device or many, with the checks Lightning leaves to a traceback.

Before the Trainer exists: is the accelerator the preset names actually here? After: will the chosen
strategy start its ranks in a way this invocation survives (a Hydra multirun cannot be re-executed, a
multi-node run needs a cluster launcher)? Each failure is one `UserError` sentence.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

from omegaconf import DictConfig, ListConfig

from experiments.errors import UserError

_GPU_NAMES = ("gpu", "cuda")
# Variables by which a process learns it is one rank of a job someone else started.
_MANUAL_MULTINODE_VARS = ("NODE_RANK", "MASTER_ADDR")


class MultirunLaunchError(UserError):
    """The strategy re-executes the command line, which a sweep cannot survive: stops the whole sweep."""

    stops_sweep = True


def requested_device_count(devices: Any) -> int | None:
    """How many devices `trainer.devices` asks for; None for `auto` / -1 (whatever is there)."""
    if isinstance(devices, (list, tuple, ListConfig)):
        return len(devices)
    text = str(devices).strip()
    if text in ("auto", "-1"):
        return None
    if "," in text:
        return len([part for part in text.split(",") if part.strip()])
    return int(text) if text.lstrip("-").isdigit() else None


def check_hardware(trainer_cfg: DictConfig) -> None:
    """The accelerator the config names must exist here, in the number asked for."""
    import torch

    accelerator = str(trainer_cfg.get("accelerator", "auto")).lower()
    wanted = requested_device_count(trainer_cfg.get("devices", "auto"))
    if accelerator in _GPU_NAMES:
        if not torch.cuda.is_available():
            why = (f"this PyTorch build ({torch.__version__}) has no CUDA support" if torch.version.cuda is None
                   else "no CUDA device is visible (check the driver and CUDA_VISIBLE_DEVICES)")
            raise UserError(f"trainer.accelerator={accelerator} needs a CUDA GPU, but {why}; "
                            "use trainer=cpu, trainer=auto or trainer=ddp_cpu here.")
        if wanted is not None and wanted > torch.cuda.device_count():
            raise UserError(f"trainer.devices asks for {wanted} GPUs, but this machine has "
                            f"{torch.cuda.device_count()}; lower trainer.devices or use devices=auto.")
    elif accelerator == "mps":
        if not torch.backends.mps.is_available():
            raise UserError("trainer.accelerator=mps needs an Apple-silicon GPU with Metal (MPS), which is not "
                            "available here; use trainer=cpu or trainer=auto.")
    elif accelerator == "tpu":
        from lightning.pytorch.accelerators import XLAAccelerator

        if not XLAAccelerator.is_available():
            raise UserError("trainer.accelerator=tpu needs TPU cores through torch_xla, and none were found "
                            "(is torch_xla installed on a TPU host?); use trainer=cpu or trainer=auto.")


def _in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def externally_started(environ: Any = os.environ) -> tuple[str, int] | None:
    """(launcher, process count) when torchrun or SLURM started this process as one of several."""
    if "TORCHELASTIC_RUN_ID" in environ:
        return "torchrun", int(environ.get("WORLD_SIZE", "1"))
    if environ.get("SLURM_JOB_NAME") not in (None, "bash", "interactive") and "SLURM_NTASKS" in environ:
        return "SLURM", int(environ["SLURM_NTASKS"])
    return None


def check_launch(trainer: Any, multirun: bool) -> None:
    """Refuse launches that would crash or hang after the run is already open in MLflow."""
    # Private in name, but the class that marks "Lightning re-runs sys.argv for each extra local rank".
    from lightning.pytorch.strategies.launchers import _SubprocessScriptLauncher

    strategy = trainer.strategy
    environment = getattr(strategy, "cluster_environment", None)
    external = environment is not None and environment.creates_processes_externally
    re_executes = isinstance(getattr(strategy, "launcher", None), _SubprocessScriptLauncher) and not external
    if multirun and re_executes and trainer.num_devices > 1:
        raise MultirunLaunchError(
            "trainer.strategy=ddp re-executes the command once per extra device, which cannot work inside a "
            "Hydra multirun (-m); sweep with trainer=ddp_spawn (e.g. trainer=ddp_spawn trainer.accelerator=cpu "
            "trainer.devices=2), or on SLURM with hydra/launcher=slurm."
        )
    started = externally_started()
    if started is not None and started[1] > 1 and started[1] != trainer.world_size:
        launcher, count = started
        raise UserError(
            f"{launcher} started {count} processes, but trainer.num_nodes × trainer.devices = {trainer.num_nodes} "
            f"× {trainer.num_devices}; make them match, e.g. trainer=multinode trainer.num_nodes=N "
            "trainer.devices=<processes per node>."
        )
    if trainer.num_nodes > 1 and not external and not any(v in os.environ for v in _MANUAL_MULTINODE_VARS):
        raise UserError(
            f"trainer.num_nodes={trainer.num_nodes} needs every node's processes started by a cluster launcher "
            "(torchrun on each node, or SLURM), and none was detected, so this process would wait forever for "
            "the other nodes; see docs/distributed.md, or set trainer.num_nodes=1."
        )


def quiet_distributed_warnings() -> None:
    """ExperimentModule logs torchmetrics values that are already reduced across ranks, so Lightning's
    advice to add `sync_dist=True` (a second, redundant all-reduce) does not apply."""
    warnings.filterwarnings("ignore", message=r".*sync_dist=True.*")


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())


def build_trainer(trainer_cfg: DictConfig, callbacks: list[Any], logger: Any, plugins: list[Any] | None = None) -> Any:
    """`instantiate(trainer_cfg)` with hardware checks before and launch checks after."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    check_hardware(trainer_cfg)
    quiet_distributed_warnings()
    try:
        trainer = instantiate(trainer_cfg, callbacks=callbacks, logger=logger, plugins=plugins)
    except InstantiationException as err:
        cause = err.__cause__
        if isinstance(cause, (MisconfigurationException, ValueError, TypeError)):
            raise UserError(f"Lightning refused the trainer config: {_one_line(cause)}") from None
        raise
    check_launch(trainer, _in_multirun())
    return trainer
