"""`experiments <subcommand> …` — cheap: nothing here imports torch before a subcommand needs it.

`train` hands the rest of the command line to Hydra untouched (overrides, -m, --cfg, --help, shell
completion). Lightning's `ddp` strategy re-executes this program for the other ranks with the same
arguments minus nothing we can control, so the chosen subcommand also travels in an environment
variable that child ranks read when their first argument is not a subcommand.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable

SUBCOMMAND_ENV = "EXPERIMENTS_SUBCOMMAND"

USAGE = """usage: experiments <command> [arguments]

Train, sweep, compare and reproduce MLP experiments (Lightning + Hydra + MLflow).

commands:
  train      train one model, or sweep with -m (Hydra overrides: key=value ...)
  study      the overfitting study: baseline + every fix × seeds, then the comparison report
  compare    compare fixes across seeds from MLflow (table, Markdown, CSV, plots)
  reproduce  rerun a tracked run from its MLflow id and show whether it matches (docs/reproduce.md)
  eval       evaluate a checkpoint or a run's logged model on its test split or a CSV
  predict    a run's logged model on the rows of a CSV/Parquet table (labels, probabilities)
  ui         open the MLflow UI on the project's tracking store
  bench      time the training path against a hand-written PyTorch loop
  help       show this message

examples:
  experiments train                                   the seed experiment (8->10->8->1, 10 epochs)
  experiments train model.hidden_dims=[64,64] optimizer.lr=0.01 data=breast_cancer
  experiments train -m model.activation=relu,tanh optimizer.lr=1e-3,1e-2
  experiments train --help                            config groups and options
  experiments study --seeds 3                         every overfitting fix, compared (docs/overfitting.md)
  experiments train resume=RUN_ID                     continue an interrupted run into the same MLflow run
  experiments reproduce RUN_ID --strict               rerun a run; refuse if code/packages/data changed
  experiments eval run_id=RUN_ID csv=new.csv          test metrics of a run's model on other data
  experiments predict run_id=RUN_ID input=new.csv     predictions for new rows, written beside them
  experiments compare --experiment overfitting
  experiments ui
  experiments bench --workloads tiny,medium,large
"""


def _train(args: list[str]) -> int:
    from experiments.speedups import pause_gc_for_startup

    pause_gc_for_startup()  # `train()` resumes it when fitting starts
    os.environ[SUBCOMMAND_ENV] = "train"
    if "COMP_LINE" in os.environ:  # shell completion: Hydra must not see the subcommand as an override
        os.environ["COMP_LINE"] = os.environ["COMP_LINE"].replace(" train ", " ", 1)
    sys.argv = [sys.argv[0], *args]
    from experiments.population_host import start_if_asked

    start_if_asked(args)  # a population sweep's training process, loading while Hydra composes the jobs
    from experiments.hydra_errors import hydra_errors_as_sentences
    from experiments.train import main as train_main

    with hydra_errors_as_sentences():
        train_main()
    return 0


# Every other subcommand is a module with `main(argv) -> int`, imported only when chosen.
_MODULES = {
    "study": "experiments.study",
    "compare": "experiments.compare",
    "reproduce": "experiments.reproduce",
    "eval": "experiments.evaluate",
    "predict": "experiments.predict",
    "ui": "experiments.ui",
    "bench": "experiments.bench",
}


def _module_command(module: str) -> Callable[[list[str]], int]:
    def run(args: list[str]) -> int:
        return importlib.import_module(module).main(args)

    return run


COMMANDS: dict[str, Callable[[list[str]], int]] = {
    "train": _train,
    **{name: _module_command(module) for name, module in _MODULES.items()},
}


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in COMMANDS:
        command, rest = args[0], args[1:]
    elif args and args[0] in ("-sc", "--shell-completion"):
        command, rest = "train", args  # Hydra's completion script calls the program without the subcommand
    elif os.environ.get(SUBCOMMAND_ENV) in COMMANDS and (not args or args[0] not in ("help", "-h", "--help")):
        command, rest = os.environ[SUBCOMMAND_ENV], args  # a re-executed DDP rank
    elif not args or args[0] in ("help", "-h", "--help"):
        print(USAGE)
        sys.exit(0)
    else:
        print(f"error: unknown command {args[0]!r}; choose one of: {', '.join(COMMANDS)}.", file=sys.stderr)
        sys.exit(2)
    from experiments.errors import ReportedError
    from experiments.tracking.server import bound_server_waits

    bound_server_waits()  # a tracking server that stops answering fails a write in seconds, not minutes
    try:
        code = COMMANDS[command](rest)
    except ReportedError as err:  # a user's mistake, or a tracking server that went away
        print(f"error: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
    except BrokenPipeError:  # the reader went away (`experiments train --help | head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the exit's flush has nowhere to fail
        sys.exit(1)
    if argv is None:  # the process's own entry point, not a caller's
        from experiments.speedups import exit_fast

        exit_fast(code)
    sys.exit(code)
