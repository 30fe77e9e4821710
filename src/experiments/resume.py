"""`experiments train resume=RUN_ID` (or `ckpt_path=…`): continue a run into the same MLflow run.

A continued run trains with the config the run *recorded*, not with whatever the command line
composes today, from its last checkpoint (epoch-end state: weights, optimizer, schedulers, loop
progress, callbacks, RNG), into its own run dir and MLflow run id. So appending `resume=ID` to the
original command, or typing only `experiments train resume=ID`, both work; an override that would
change the recorded config is refused rather than silently half-applied.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from experiments.errors import UserError
from experiments.paths import project_root
from experiments.tracking.lookup import find_run, find_trained_run, open_store, recorded_config
from experiments.tracking.store import default_tracking_uri, resolve_tracking_uri

# Overrides a continued run takes from today's command line: where the store is, and console settings.
LOCATION_KEYS = ("resume", "ckpt_path", "paths.output_dir", "logger.tracking_uri")
CONSOLE_KEYS = ("trainer.enable_progress_bar", "callbacks.progress_bar", "threads")
LAST_CHECKPOINT = "last.ckpt"
CONTINUED_TAG = "resumed_from_epoch"
SIGTERM_EXIT_CODE = 128 + 15  # what a shell reports for a process ended by SIGTERM


def _command_line_overrides() -> list[str]:
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def _comparable(value: Any, run_dir: str, recorded_run_dir: str) -> Any:
    """Today's run dir stands in for the recorded one, so derived paths compare equal."""
    if isinstance(value, dict):
        return {k: _comparable(v, run_dir, recorded_run_dir) for k, v in value.items()}
    if isinstance(value, list):
        return [_comparable(v, run_dir, recorded_run_dir) for v in value]
    if isinstance(value, str) and run_dir:
        return value.replace(run_dir, recorded_run_dir)
    return value


def _plain(cfg: DictConfig, key: str) -> Any:
    node = OmegaConf.select(cfg, key, default=None, throw_on_missing=False)
    if OmegaConf.is_config(node):
        return OmegaConf.to_container(node, resolve=True)  # type: ignore[arg-type]
    return node


def refuse_changing_overrides(cfg: DictConfig, recorded: DictConfig, run_id: str) -> None:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    run_dir = str(OmegaConf.select(cfg, "paths.run_dir", default="") or "")
    recorded_run_dir = str(OmegaConf.select(recorded, "paths.run_dir", default="") or "")
    changed = []
    for override in OverridesParser.create().parse_overrides(_command_line_overrides()):
        key = override.key_or_group.replace("/", ".")
        if key.startswith("hydra") or key in LOCATION_KEYS + CONSOLE_KEYS:
            continue
        given = _comparable(_plain(cfg, key), run_dir, recorded_run_dir)
        before = _plain(recorded, key)
        if given != before:
            changed.append(f"{key} (recorded {before!r}, given {given!r})")
    if changed:
        raise UserError(
            f"resume continues run {run_id} with the config it recorded, and these overrides would change it: "
            f"{'; '.join(changed)}. Drop them, or start a new run."
        )


def _checkpoint_dir(recorded: DictConfig) -> Path | None:
    dirpath = (OmegaConf.select(recorded, "callbacks.last_checkpoint.dirpath", default=None)
               or OmegaConf.select(recorded, "callbacks.model_checkpoint.dirpath", default=None))
    return Path(dirpath) if dirpath else None


def find_last_checkpoint(client: Any, run: Any, recorded: DictConfig) -> Path | None:
    """`last.ckpt` in the run's checkpoint dir, else the copy logged with `log_checkpoints`, else None."""
    folder = _checkpoint_dir(recorded)
    if folder is not None and (folder / LAST_CHECKPOINT).is_file():
        return folder / LAST_CHECKPOINT
    logged = {a.path for a in client.list_artifacts(run.info.run_id, "checkpoints")}
    if f"checkpoints/{LAST_CHECKPOINT}" in logged and folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        local = client.download_artifacts(run.info.run_id, f"checkpoints/{LAST_CHECKPOINT}", str(folder.parent))
        return Path(local)
    return None


def _last_logged_epoch(client: Any, run: Any, monitor: str) -> int:
    history = client.get_metric_history(run.info.run_id, monitor)
    return max((m.step for m in history), default=-1)


def prepare_continuation(cfg: DictConfig) -> DictConfig:
    """The config to train: `cfg` itself, or — for `resume=…` / a `ckpt_path` of a tracked run —
    that run's recorded config pointed at its checkpoint and MLflow run id."""
    resume = cfg.get("resume")
    ckpt_path = cfg.get("ckpt_path")
    if not resume and not ckpt_path:
        return cfg
    uri = resolve_tracking_uri(cfg.logger.get("tracking_uri"), cfg.paths.output_dir)
    checkpoint_epoch = None
    if ckpt_path:
        from experiments.checkpoints import read_checkpoint, run_record

        checkpoint = read_checkpoint(ckpt_path)
        record = run_record(checkpoint) or {}
        owner = record.get("mlflow_run_id")
        if not owner and not resume:
            return cfg  # a checkpoint of an untracked run: Lightning continues from it into a new run
        if resume and owner != resume:
            raise UserError(f"Checkpoint {ckpt_path!r} belongs to MLflow run {owner!r}, not to run {resume!r}.")
        resume = owner
        checkpoint_epoch = int(checkpoint.get("epoch", -1))
        client = open_store(uri, "resume")
        try:
            run = find_run(client, resume, uri, "resume")
        except UserError:
            raise UserError(
                f"Checkpoint {ckpt_path!r} belongs to MLflow run {resume} of the store {record.get('tracking_uri')}, "
                f"which is not in the store {uri}; point logger.tracking_uri at the run's store."
            ) from None
    else:
        client = open_store(uri, "resume")
        run = find_trained_run(client, resume, uri, "resume")
    if run.info.status == "FINISHED":
        raise UserError(
            f"MLflow run {resume} finished; there is nothing to resume. Rerun it with `experiments reproduce {resume}`."
        )
    recorded = recorded_config(client, run)
    refuse_changing_overrides(cfg, recorded, str(resume))
    monitor = str(recorded.get("monitor", "val/loss"))
    if ckpt_path:
        checkpoint_file: Path | None = Path(ckpt_path).expanduser().resolve()
        logged_up_to = _last_logged_epoch(client, run, monitor)
        if checkpoint_epoch is not None and logged_up_to > checkpoint_epoch:
            raise UserError(
                f"Checkpoint {ckpt_path!r} is from epoch {checkpoint_epoch}, but run {resume} logged epochs up to "
                f"{logged_up_to}; continuing from it would log those epochs twice. Use resume={resume} "
                "(its last checkpoint)."
            )
    else:
        checkpoint_file = find_last_checkpoint(client, run, recorded)
        if checkpoint_file is None and _last_logged_epoch(client, run, monitor) >= 0:
            raise UserError(
                f"Run {resume} has no last checkpoint (looked in {_checkpoint_dir(recorded)} and its MLflow "
                f"artifacts), so it cannot continue; rerun it with `experiments reproduce {resume}`."
            )
    continued = recorded.copy()
    OmegaConf.set_struct(continued, False)
    continued.resume = str(resume)
    continued.ckpt_path = str(checkpoint_file) if checkpoint_file else None
    continued.logger.run_id = str(resume)
    continued.logger.tracking_uri = uri
    for key in CONSOLE_KEYS:
        if OmegaConf.select(cfg, key, default="__absent__") != "__absent__":
            OmegaConf.update(continued, key, _plain(cfg, key), merge=False, force_add=True)
    return continued


def resume_command(run_id: str, tracking_uri: str, output_dir: str) -> str:
    """The exact command that continues `run_id`: it names the store unless it is the project default,
    by its output dir when the store is the one in there (so Hydra's own run dir lands there too)."""
    parts = ["experiments", "train", f"resume={run_id}"]
    if tracking_uri == default_tracking_uri(output_dir):
        if Path(output_dir).resolve() != (project_root() / "outputs").resolve():
            parts.append(f"paths.output_dir={output_dir}")
    else:
        parts.append(f"logger.tracking_uri={tracking_uri}")
    return " ".join(shlex.quote(p) for p in parts)


def record_continuation(logger: Any, cfg: DictConfig, fingerprint: str) -> None:
    """The run is live again: RUNNING, no stale failure reason, the epoch it picked up at; and a
    warning when code, packages or data changed since it was interrupted."""
    from experiments.tracking.drift import code_drift, data_drift, environment_drift
    from experiments.tracking.lookup import recorded_diff
    from experiments.tracking.run import FAILURE_REASON_TAG

    client, run_id = logger.experiment, logger.run_id
    run = client.get_run(run_id)
    client.update_run(run_id, status="RUNNING")
    if FAILURE_REASON_TAG in run.data.tags:
        client.delete_tag(run_id, FAILURE_REASON_TAG)
    start = 0
    if cfg.get("ckpt_path"):
        import torch

        start = int(torch.load(cfg.ckpt_path, map_location="cpu", weights_only=True).get("epoch", -1)) + 1
    client.set_tag(run_id, CONTINUED_TAG, str(start))
    # Checkpoints reach the disk at most every `checkpoint_every_s`, metrics every few seconds: after a
    # hard kill (SIGKILL, power loss) the run may have logged epochs past its last checkpoint.
    logger.logged_through = {key: max((m.step for m in client.get_metric_history(run_id, key)), default=-1)
                             for key in run.data.metrics}
    tags = run.data.tags
    drifts = code_drift(tags, recorded_diff(client, run)) + environment_drift(tags) + data_drift(tags, fingerprint)
    for drift in drifts:
        if drift.blocking:
            print(f"warning: resuming run {run_id} with a different {drift.describe()}", file=sys.stderr)
    print(f"Resuming MLflow run {run_id} at epoch {start}.", file=sys.stderr, flush=True)


def report_interruption(logger: Any, checkpoint_callbacks: list[Any], cfg: DictConfig) -> None:
    """Log the chosen checkpoints (a remote store then holds them too) and tell the user what was
    kept and the one command that continues the run."""
    from experiments.checkpoints import last_checkpoint, log_checkpoints

    last = last_checkpoint(checkpoint_callbacks)
    choice = cfg.get("log_checkpoints", "none")
    if logger is not None and choice != "none":
        try:
            log_checkpoints(logger, checkpoint_callbacks, choice)
        except Exception as err:  # noqa: BLE001 -- the interruption is the news; an upload failure must not hide it
            print(f"warning: could not log checkpoints to MLflow: {err}", file=sys.stderr)
    if logger is None:
        hint = f" Continue it from its last checkpoint with ckpt_path={last}." if last else ""
        print(f"Interrupted; this run was not tracked.{hint}", file=sys.stderr, flush=True)
        return
    saved = f"last checkpoint {last}" if last else "no epoch had finished, so there is no checkpoint yet"
    print(
        f"Interrupted: MLflow run {logger.run_id} is marked KILLED; {saved}.\n"
        f"Resume it with:\n  {resume_command(logger.run_id, logger._tracking_uri, str(cfg.paths.output_dir))}",
        file=sys.stderr,
        flush=True,
    )


def exit_for_interrupt(err: BaseException) -> BaseException:
    """Lightning turns SIGTERM into `SIGTERMException` (a SystemExit with code None, i.e. success);
    exit as a terminated process would instead, so shells and schedulers see the interruption."""
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    if isinstance(err, SIGTERMException):
        return SystemExit(SIGTERM_EXIT_CODE)
    if isinstance(err, KeyboardInterrupt):
        return SystemExit(130)
    return err
