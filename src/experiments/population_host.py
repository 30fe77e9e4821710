"""The process a population sweep trains in, started as the sweep starts.

A sweep process spends its first seconds in Hydra (composing every job's config) and MLflow (the sweep's
parent run), then as many again importing Lightning and torch as its first member opens: one after the
other, on one core. `experiments train -m … hydra/launcher=population` therefore forks, before Hydra
starts, a host process that imports Lightning and torch at once, on the other core, and then opens,
trains and closes the sweep's populations for the launcher (`HostedPopulation` has `Population`'s
calls; each runs there, in its job's Hydra context, and returns its value or raises its error here). The
launcher keeps everything Hydra's own: the jobs' directories and files, callbacks, results; the host
checks each job's config (`population.check_job`) as it opens it, in the job's Hydra context. As its
first population arrives, the host forks that population's writer and plot workers
(`worker_process.forking`), which so start with MLflow and Matplotlib loaded.

A fork, not a spawn: the host starts with the command's state (arguments, environment, Hydra's modules)
and before any thread, so the fork is safe. Off with `EXPERIMENTS_NO_SPEEDUPS=population_host`; not used
on one core, where the two would take turns. A host that dies fails the jobs it held; later populations
then train in the sweep process.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from multiprocessing.connection import Connection, Pipe
from pathlib import Path
from typing import Any

from experiments.errors import ReportedError
from experiments.timing import mark

LAUNCHER_OVERRIDE = "hydra/launcher=population"
_MULTIRUN_FLAGS = ("-m", "--multirun")
# Hydra's commands that print or complete instead of sweeping: nothing to train.
_NOT_A_SWEEP = ("--help", "-h", "--hydra-help", "--cfg", "-c", "--info", "-i", "--shell-completion", "-sc")

_HOST: PopulationHost | None = None


def start_if_asked(args: list[str]) -> None:
    """Start the host when the command is a population sweep (`-m` and `hydra/launcher=population`)."""
    global _HOST
    from experiments.speedups import enabled

    if _HOST is not None or not (set(args) & set(_MULTIRUN_FLAGS)) or LAUNCHER_OVERRIDE not in args \
            or set(args) & set(_NOT_A_SWEEP) or not enabled("population_host") \
            or (os.cpu_count() or 1) < 2 or not hasattr(os, "fork"):
        return
    _HOST = PopulationHost()


def current() -> PopulationHost | None:
    """The sweep's host, while it is alive."""
    return _HOST if _HOST is not None and _HOST.alive else None


class HostDied(ReportedError):
    """The host process ended while it held a population: each of its jobs fails with this sentence."""


class PopulationHost:
    """The sweep process's end of the host: `call(name, *args)` runs a request there."""

    def __init__(self) -> None:
        import atexit

        here, there = Pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the host
            here.close()
            _serve(there)  # never returns
        there.close()
        self.pid = pid
        self.alive = True
        self._conn = here
        self._unanswered = 0  # requests sent by `send`, whose answers are read before the next `call`'s
        self._used = False  # whether a population was ever handed to it
        atexit.register(self.close)

    def send(self, name: str, *args: Any) -> None:
        """Queue request `name` without waiting: its error, if any, is raised by the next `call`."""
        self._check_alive()
        self._used = True
        try:
            self._conn.send((name, args))
        except OSError:
            raise self._lost() from None
        self._unanswered += 1

    def call(self, name: str, *args: Any) -> Any:
        """Run request `name` in the host; return its value or raise its error. Ctrl-C here waits for the
        host's answer (the host closes its runs KILLED first), then is raised."""
        self.send(name, *args)
        answers, self._unanswered = self._unanswered, 0
        first_error: BaseException | None = None
        value = None
        for _ in range(answers):  # every answer read, in order, so the next call reads its own
            try:
                value = self._answer()
            except HostDied:
                raise
            except BaseException as err:  # noqa: BLE001 - raised once all are read
                first_error = first_error or err
        if first_error is not None:
            raise first_error
        return value

    def _check_alive(self) -> None:
        if not self.alive:
            raise HostDied("The population's training process is gone; its runs are closed FAILED with the sweep.")

    def _lost(self) -> HostDied:
        """The host is gone (killed, out of memory): what the jobs it held fail with."""
        self.alive = False
        code = _reap(self.pid)
        how = f"was killed (signal {-code})" if code is not None and code < 0 else f"ended (exit status {code})"
        return HostDied(f"The population's training process {how}; its runs are closed FAILED with the sweep.")

    def _answer(self) -> Any:
        stopped: BaseException | None = None  # Ctrl-C, or SIGTERM turned into SystemExit, while waiting
        while True:
            try:
                status, value = self._conn.recv()
                break
            except (KeyboardInterrupt, SystemExit) as err:
                if stopped is None:  # one sent to this process alone reaches the host too
                    stopped = err
                    _signal(self.pid, signal.SIGINT)
            except (EOFError, OSError):
                raise self._lost() from None
        if stopped is not None:  # the host has closed its runs KILLED: now this process stops as asked
            raise stopped
        if status == "err":
            raise value
        return value

    def close(self) -> None:
        """Stop the host (its writer and plot workers first) and wait for it."""
        if not self.alive:
            return
        self.alive = False
        if not self._used:  # it holds nothing (a config error, a sweep of single runs): no need to let it load
            _signal(self.pid, signal.SIGKILL)
        try:
            self._conn.send(("exit", ()))
        except OSError:
            pass
        _reap(self.pid)
        self._conn.close()


class HostedPopulation:
    """`population.Population` whose members open, train and close in the host (see the module's
    docstring); a job's files are saved there too, unless a callback reads them as the job starts."""

    def __init__(self, host: PopulationHost, size: int, memory_bytes: int | None, members: int) -> None:
        self._host = host
        self._died: HostDied | None = None
        host.send("new", size, memory_bytes, members)  # answered while this process starts the jobs

    def save_job_files(self, index: int, folder: Path, configs: dict[str, Any], now: bool = False) -> None:
        """Saved as `OmegaConf.save` writes them: by the host, which waits for its first member meanwhile
        (a failure fails the job as it closes), or here and `now`."""
        from omegaconf import OmegaConf

        from experiments.population_writer import save_yaml_files

        values = {name: OmegaConf.to_container(config, enum_to_str=True) for name, config in configs.items()}
        if now:
            save_yaml_files(folder, values)
        else:
            self._host.send("save_files", index, folder, values)

    def check(self, index: int, cfg: Any) -> None:
        """Checked in the host, in the job's context, as it opens (`population.check_job`): a config that
        fails there fails its job as it closes."""

    def open(self, index: int, cfg: Any) -> None:
        from hydra.core.hydra_config import HydraConfig

        from experiments.speedups import resume_gc_after_startup

        resume_gc_after_startup()  # this process trains nothing: what it loaded is loaded
        # Not waited for: the members open one after another there while the next are sent; an opening
        # that fails is raised as the job closes (its run is closed FAILED there, as here).
        self._host.send("open", index, cfg, HydraConfig.instance().cfg)

    def train(self) -> None:
        try:
            self._host.call("train")
        except HostDied as err:  # each job fails with it as it closes, as when a population's fit fails
            self._died = err

    def close(self, index: int) -> Any:
        if self._died is not None:
            raise HostDied(str(self._died))  # its own, for each job
        return self._host.call("close", index)

    def release(self) -> None:
        if self._host.alive:
            self._host.call("release")


# --- in the host ------------------------------------------------------------------------------------
def _serve(conn: Connection) -> None:
    """The host's life: load, then answer requests until told to stop or the sweep process is gone."""
    from experiments.tracking.server import in_one_sentence

    code = 0
    try:
        mark("population_host_start")
        signal.signal(signal.SIGINT, _interrupt_once)
        # SIGTERM to the process group (a cluster's, a user's kill): as in the sweep process, SystemExit,
        # so training closes its runs KILLED before this process ends.
        signal.signal(signal.SIGTERM, _terminate)
        server = _Server(conn.fileno())
        while True:
            try:
                name, args = conn.recv()
            except KeyboardInterrupt:  # between requests: the sweep process decides what comes next
                signal.signal(signal.SIGINT, _interrupt_once)
                continue
            except (EOFError, OSError, SystemExit):  # the sweep process is gone, or this one is told to end
                break
            if name == "exit":
                break
            try:
                reply: tuple[str, Any] = ("ok", getattr(server, name)(*args))
            except BaseException as err:  # noqa: BLE001 - every error is the caller's to raise
                # What an error was raised from does not cross processes: a tracking server that did not
                # answer becomes here the sentence the sweep process would make of it.
                reply = ("err", in_one_sentence(err, in_sweep=True))
            signal.signal(signal.SIGINT, _interrupt_once)
            signal.signal(signal.SIGTERM, _terminate)
            try:
                conn.send(reply)
            except Exception as err:  # noqa: BLE001 - an error that does not pickle: its sentence does
                conn.send(("err", RuntimeError(f"{type(reply[1]).__name__}: {reply[1]}" if reply[0] == "err"
                                               else f"could not return the result: {err}")))
        server.stop()
    except BaseException:  # noqa: BLE001 - the host must never return into the sweep's code
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _terminate(signum: int, frame: Any) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise SystemExit(128 + signum)


def _interrupt_once(signum: int, frame: Any) -> None:
    """Ctrl-C: stop training (its runs are closed KILLED); a second one must not cut that closing short."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt


class _Server:
    """The host's requests: `Population`'s calls, each in its job's Hydra context."""

    def __init__(self, conn_fd: int) -> None:
        from hydra.core.utils import setup_globals

        from experiments.paths import register_resolvers

        setup_globals()
        register_resolvers()
        # What opening the first member would load: now, while the sweep process composes the jobs; the
        # rest in the background, while this process waits for its first member.
        import lightning.pytorch  # noqa: F401

        import experiments.models.population_module
        import experiments.population  # noqa: F401

        self._loader = threading.Thread(target=_load_the_rest, daemon=True)
        self._loader.start()
        self._conn_fd = conn_fd
        self.population: Any = None
        self.workers: Any = None
        self.contexts: dict[int, Any] = {}
        self.errors: dict[int, Exception] = {}  # a job's error in saving its files or opening, raised as it closes
        mark("population_host_ready")

    def new(self, size: int, memory_bytes: int | None, members: int) -> None:
        from experiments.population import Population
        from experiments.population_workers import PopulationWorkers

        if self.workers is None:  # one set for the sweep, as the launcher keeps them
            from experiments.worker_process import forking, forks_here

            self.workers = PopulationWorkers(members)
            if forks_here():  # the first population: nothing but imports has run here, no store is open
                self._loader.join()  # what the workers use is loaded, and the loading thread has ended
                with forking(close_in_child=[self._conn_fd]):
                    self.workers.writer()
                    self.workers.plots()  # even if no member plots: forked, an idle worker costs ~nothing
        self.workers.members = members
        self.population = Population(size, memory_bytes, self.workers)
        self.contexts, self.errors = {}, {}

    def save_files(self, index: int, folder: Path, values: dict[str, Any]) -> None:
        from experiments.population_writer import save_yaml_files

        try:
            save_yaml_files(folder, values)
        except Exception as err:  # noqa: BLE001 - the job's error, raised as it closes
            self.errors[index] = err

    def open(self, index: int, cfg: Any, hydra_cfg: Any) -> None:
        from hydra.core.utils import configure_log

        from experiments.population import check_job

        self.contexts[index] = hydra_cfg
        self._enter(index)
        configure_log(hydra_cfg.hydra.job_logging, hydra_cfg.hydra.verbose)
        try:
            if index not in self.errors:
                check_job(cfg)
                self.population.open(index, cfg)
        except Exception as err:  # noqa: BLE001 - the job's error, raised as it closes
            self.errors[index] = err

    def train(self) -> None:
        if any(member is not None for member in self.population.members):
            self.population.train()

    def close(self, index: int) -> Any:
        if index in self.errors:
            raise self.errors.pop(index)
        self._enter(index)
        return self.population.close(index)

    def release(self) -> None:
        population, self.population = self.population, None
        if population is not None:
            population.release()

    def stop(self) -> None:
        if self.workers is not None:
            self.workers.close()

    def _enter(self, index: int) -> None:
        from hydra.core.hydra_config import HydraConfig

        HydraConfig.instance().cfg = self.contexts[index]


def _load_the_rest() -> None:
    """The MLflow store, scikit-learn and the data pipeline a member's opening loads (its run, its data),
    and Matplotlib, which plot workers forked from here use; anything that fails to load here fails
    again, and is reported, where it is used."""
    from experiments.worker_process import forks_here

    try:
        if forks_here():
            import matplotlib.backends.backend_agg
            import matplotlib.figure  # noqa: F401
        import mlflow.store.tracking.sqlalchemy_store
        import mlflow.tracking  # noqa: F401
        import sklearn.datasets  # noqa: F401
        import yaml  # noqa: F401

        import experiments.data.datamodule
        import experiments.data.preparation
        import experiments.tracking.run  # noqa: F401
    except Exception:  # noqa: BLE001, S110 - see the docstring
        pass


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except OSError:
        pass


def _reap(pid: int) -> int | None:
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:
        return None
    return os.waitstatus_to_exitcode(status)
