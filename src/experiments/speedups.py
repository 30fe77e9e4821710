"""Every shortcut the framework takes for speed, in one place, each with its off switch.

A shortcut stays only while it saves at least 0.1 s per run or 3 % of a benchmark workload when
re-measured (figures in docs/performance.md). Each can be switched off by name, or all at once:
`EXPERIMENTS_NO_SPEEDUPS=fast_exit,gc_pause` or `EXPERIMENTS_NO_SPEEDUPS=all`. Those that lean on a
library's internals check the version they were measured on and stand aside outside it, so an
upgrade can make a run slower but never wrong.

- `gc_pause`: no cyclic garbage collection while the process loads (public `gc` API).
- `requirements_map`: MLflow's requirement check maps only the model's own packages (private cache).
- `fast_exit`: the process leaves without the interpreter's module teardown (private `threading` hook).
- `sweep_config_cache`: the population launcher composes each job's config once, not twice (Hydra's
  sweeper composes every job of a batch to check it, then the launcher composes it again to run it).
- `compose_template`: a sweep job that differs from an earlier one only in values is that job's composed
  config with its own values set, not a new run of Hydra's defaults tree (Hydra's private
  `get_overrides_dirname`).
- `plot_worker`: a population's learning curves are drawn in a worker process while its runs are closed
  (`plot_worker.py`; public `concurrent.futures`).
- `yaml_render`: a config saved as YAML (a job's `.hydra/` files, a run's `config/config.yaml`) is rendered
  from its plain values by OmegaConf's own YAML dumper (private `omegaconf._utils.get_omega_conf_dumper`),
  without first building an OmegaConf node of them only to turn it back into the same values.
- `population_writer`: a population's job files (`.hydra/`) and its members' opening records (params, tags,
  config, dataset) are written in a worker process while the next members open (`population_writer.py`;
  public `concurrent.futures`).
- `population_host`: a population sweep (`-m … hydra/launcher=population`) trains in a process forked as
  the command starts, which loads Lightning and torch while the sweep process composes the jobs
  (`population_host.py`; public `os.fork` and `multiprocessing.connection`).
- `worker_fork`: that process forks its writer and plot workers once it has loaded what they use, instead
  of starting fresh interpreters that import MLflow and Matplotlib again (`worker_process.py`; public
  `multiprocessing` fork context; Linux and Python 3.11, where it was measured).
"""

from __future__ import annotations

import functools
import gc
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

SWITCH_ENV = "EXPERIMENTS_NO_SPEEDUPS"
NAMES = ("gc_pause", "requirements_map", "fast_exit", "sweep_config_cache", "compose_template", "plot_worker",
         "population_writer", "yaml_render", "population_host", "worker_fork")
# The fast exit's older switch, kept working: EXPERIMENTS_NORMAL_EXIT=1.
NORMAL_EXIT_ENV = "EXPERIMENTS_NORMAL_EXIT"


def enabled(name: str) -> bool:
    """Whether the shortcut `name` is on (it is unless `EXPERIMENTS_NO_SPEEDUPS` names it, or says all)."""
    off = {part.strip() for part in os.environ.get(SWITCH_ENV, "").split(",") if part.strip()}
    if name == "fast_exit" and os.environ.get(NORMAL_EXIT_ENV) == "1":
        return False
    return not ({"all", "1", name} & off)


@functools.cache  # read from the installed metadata once: a population renders four configs per member
def _version_of(distribution: str) -> tuple[int, ...]:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return tuple(int(part) for part in version(distribution).split(".")[:2] if part.isdigit())
    except PackageNotFoundError:
        return ()


# --- gc_pause -----------------------------------------------------------------------------------------
# Start-up (importing torch, Lightning and MLflow, creating the MLflow store) builds hundreds of thousands
# of long-lived objects; the cyclic collector rescans all of them each time their number grows by a quarter.
_gc_paused_for_startup = False


def pause_gc_for_startup() -> None:
    """Called first thing by `experiments train`: no cycle collection while the process loads."""
    global _gc_paused_for_startup
    if gc.isenabled() and enabled("gc_pause"):
        gc.disable()
        _gc_paused_for_startup = True


def resume_gc_after_startup() -> None:
    """Called when training starts: what start-up built is frozen (never rescanned; it lives as long as
    the process anyway) and collection resumes for what training allocates. Later calls do nothing."""
    global _gc_paused_for_startup
    if _gc_paused_for_startup:
        gc.freeze()
        gc.enable()
        _gc_paused_for_startup = False


# --- requirements_map ---------------------------------------------------------------------------------
_MLFLOW_MEASURED = 3


@contextmanager
def requirements_map_of(requirements: dict[str, str]) -> Iterator[None]:
    """Let MLflow's requirement check map just the model's own packages to their modules.

    Before logging, MLflow checks each pip requirement against the installed version (it warns on a
    mismatch; that check still runs). To find a requirement's module it first maps every module of
    every installed distribution (`importlib.metadata.packages_distributions()`), which takes longer than
    training the seed network, and nothing in MLflow's public API skips it. The map is a
    private cache that MLflow fills when it is None; handing it the few packages the model requires
    skips the scan. Should a later MLflow rename the cache, this does nothing and logging is slower.
    """
    from mlflow.utils import requirements_utils

    measured = _version_of("mlflow")[:1] == (_MLFLOW_MEASURED,)
    if not (enabled("requirements_map") and measured) or \
            getattr(requirements_utils, "_MODULES_TO_PACKAGES", False) is not None:
        yield  # already filled (or no longer there): nothing to save
        return
    requirements_utils._MODULES_TO_PACKAGES = {
        "mlflow": ["mlflow"], "sklearn": ["scikit-learn"],
        **{package: [package] for package in requirements if package != "scikit-learn"}
    }
    try:
        yield
    finally:  # the next caller in this process (another sweep job, a user's own log_model) scans as usual
        requirements_utils._MODULES_TO_PACKAGES = None
        requirements_utils._PACKAGES_TO_MODULES = None


# --- fast_exit ----------------------------------------------------------------------------------------
_PYTHON_MEASURED = ((3, 11), (3, 12), (3, 13))


def exit_fast(code: int) -> None:
    """Shut down as the interpreter does (threads, then atexit handlers: MLflow, logging, launchers),
    flush, and leave without its module-by-module teardown, slow once torch and MLflow are loaded."""
    import atexit
    import threading

    shutdown = getattr(threading, "_shutdown", None)  # private: where it is gone, exit the normal way
    if shutdown is None or not enabled("fast_exit") or sys.version_info[:2] not in _PYTHON_MEASURED:
        sys.exit(code)
    # First, as the interpreter does: wait for non-daemon threads and run the hooks registered with
    # `threading._register_atexit`. joblib's process pool (the joblib launcher) and concurrent.futures
    # stop their idle workers there; skipped, multiprocessing's atexit handler then waits for those
    # workers to time out (300 s after a joblib sweep).
    shutdown()
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def leave_fast_at_exit() -> None:
    """In a worker process (`ProcessPoolExecutor(initializer=...)`): as its interpreter exits, leave
    without the module-by-module teardown, as `exit_fast` does for the main process. Its pool waits for
    it to end, and a worker that loaded MLflow or Matplotlib takes a while to tear down. An atexit hook
    runs after the worker's last task and its threads are done."""
    import atexit

    if not enabled("fast_exit") or sys.version_info[:2] not in _PYTHON_MEASURED:
        return

    def leave() -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)

    atexit.register(leave)


# --- sweep_config_cache, compose_template -------------------------------------------------------------
# A sweep composes each job's config twice: `Sweeper.validate_batch_is_legal` composes the whole batch
# (and only reads it), then the launcher composes each job again. And each composition runs Hydra's
# whole defaults tree (YAML files, merges), though a sweep's jobs mostly differ only in values of keys
# the config already has. Measured on Hydra 1.3.


def cache_sweep_configs(config_loader: object) -> None:
    """Hand the launcher the config the sweeper composed (and only read) for the same job's overrides,
    instead of composing it again (`sweep_config_cache`); compose a job that differs from an earlier one
    only in values by setting them on a copy of that one's config (`compose_template`). The method is
    replaced on this loader object only (one sweep's), not on Hydra's class; a job's config is handed out
    once, so every later composition is a fresh one."""
    if _version_of("hydra-core")[:2] != (1, 3):
        return
    compose = getattr(config_loader, "load_sweep_config", None)
    if compose is None or getattr(compose, "cached_by_experiments", False):
        return
    cache, template = enabled("sweep_config_cache"), enabled("compose_template")
    if not (cache or template):
        return
    composed: dict[tuple[int, tuple[str, ...]], object] = {}
    templates = _Templates(config_loader) if template else None

    def load_sweep_config(master_config: object, sweep_overrides: list[str]) -> object:
        key = (id(master_config), tuple(sweep_overrides))
        if key in composed:
            return composed.pop(key)
        config = templates.compose(master_config, sweep_overrides) if templates is not None else None
        if config is None:
            config = compose(master_config, sweep_overrides)
            if templates is not None:
                templates.keep(master_config, sweep_overrides, config)
        if cache:
            composed[key] = config
        return config

    load_sweep_config.cached_by_experiments = True  # type: ignore[attr-defined]
    config_loader.load_sweep_config = load_sweep_config  # type: ignore[attr-defined]


class _Templates:
    """Configs Hydra composed, by the shape of their overrides: the same group choices and other
    overrides, and values (`key=`, `+key=`, `++key=`) for the same keys. A job of a known shape is that
    config with its own values set as Hydra sets them (`OmegaConf.update(..., merge=True)`), its override
    list and `override_dirname` its own. The first job of each shape is composed by Hydra (its `+key`
    adds the key later jobs set), and so is anything else: a config group, `~key`, a dict value, a key
    set twice, a key the config lacks."""

    def __init__(self, config_loader: object) -> None:
        from hydra.core.override_parser.overrides_parser import OverridesParser

        self.parser = OverridesParser.create()
        self.groups = set(config_loader.list_groups(""))  # type: ignore[attr-defined]
        self.configs: dict[tuple[object, ...], object] = {}

    def _shape(self, master_config: object, sweep_overrides: list[str]) -> tuple[tuple[object, ...], list, list] | None:
        """The overrides' shape (what must match to share a template), the value overrides, all parsed."""
        from hydra.core.override_parser.types import OverrideType

        try:
            parsed = self.parser.parse_overrides(list(sweep_overrides))
        except Exception:  # noqa: BLE001 - Hydra's own composition reports it
            return None
        # Keys that get values (not group choices): each at most once, none inside another.
        keys = [o.key_or_group for o in parsed if not self._is_group(o)]
        if any(a == b or b.startswith(a + ".") for i, a in enumerate(keys) for j, b in enumerate(keys) if i != j):
            return None
        shape: list[object] = [id(master_config)]
        values = []
        for override in parsed:
            # `key=v`, `+key=v`, `++key=v` (the Optuna sweeper's trial link): the template job's overrides
            # made or set the key; this job's value is set on it.
            if (override.type in (OverrideType.CHANGE, OverrideType.ADD, OverrideType.FORCE_ADD)
                    and not override.is_hydra_override() and not self._is_group(override)
                    and not override.is_sweep_override() and not isinstance(override.value(), dict)):
                shape.append((override.type.name, override.key_or_group))
                values.append(override)
            else:
                shape.append(("as is", override.input_line))
        return tuple(shape), values, parsed

    def _is_group(self, override: object) -> bool:
        key = override.key_or_group  # type: ignore[attr-defined]
        return override.package is not None or "/" in key or key in self.groups  # type: ignore[attr-defined]

    def keep(self, master_config: object, sweep_overrides: list[str], config: object) -> None:
        import copy

        found = self._shape(master_config, sweep_overrides)
        if found is not None and found[0] not in self.configs:
            self.configs[found[0]] = copy.deepcopy(config)  # before the launcher sets the job's id and dirs

    def compose(self, master_config: object, sweep_overrides: list[str]) -> object | None:
        import copy

        from hydra._internal.config_loader_impl import get_overrides_dirname
        from hydra.core.override_parser.types import OverrideType
        from omegaconf import OmegaConf

        found = self._shape(master_config, sweep_overrides)
        if found is None or found[0] not in self.configs:
            return None
        config = copy.deepcopy(self.configs[found[0]])
        try:
            for override in found[1]:
                OmegaConf.update(config, override.key_or_group, override.value(), merge=True,
                                 force_add=override.type != OverrideType.CHANGE)
        except Exception:  # noqa: BLE001 - Hydra's own composition says what is wrong
            return None
        task = [override for override in found[2] if not override.is_hydra_override()]
        job = config.hydra.job  # type: ignore[attr-defined]
        config.hydra.overrides.task = [override.input_line for override in task]  # type: ignore[attr-defined]
        job.override_dirname = get_overrides_dirname(
            overrides=task,
            kv_sep=job.config.override_dirname.kv_sep, item_sep=job.config.override_dirname.item_sep,
            exclude_keys=job.config.override_dirname.exclude_keys)
        OmegaConf.copy_cache(from_config=master_config, to_config=config)
        return config


# --- yaml_render --------------------------------------------------------------------------------------
# `OmegaConf.to_yaml(OmegaConf.create(values))` builds a node per value, converts them back to the same
# plain values and dumps those with its YAML dumper; building the nodes is two thirds of the time, and a
# population's writer renders four configs per member. Measured on OmegaConf 2.3.
_OMEGACONF_MEASURED = (2, 3)
_PLAIN = (str, int, float, bool, type(None))


def render_yaml(values: object) -> str:
    """The YAML text `OmegaConf.save` writes for a config whose plain values (`OmegaConf.to_container`)
    are `values`. Anything but dicts, lists and scalars (an enum, a path) goes OmegaConf's whole way."""
    from omegaconf import OmegaConf

    dumper = None
    if enabled("yaml_render") and _version_of("omegaconf")[:2] == _OMEGACONF_MEASURED and _is_plain(values):
        from omegaconf import _utils

        dumper = getattr(_utils, "get_omega_conf_dumper", None)
    if dumper is None:
        return OmegaConf.to_yaml(OmegaConf.create(values))
    import yaml

    # As `OmegaConf.to_yaml` dumps the values it gets back from the node.
    return yaml.dump(values, default_flow_style=False, allow_unicode=True, sort_keys=False, Dumper=dumper())


def _is_plain(values: object) -> bool:
    if isinstance(values, dict):
        return all(isinstance(key, _PLAIN) and _is_plain(value) for key, value in values.items())
    if isinstance(values, list):
        return all(_is_plain(value) for value in values)
    return isinstance(values, _PLAIN)
