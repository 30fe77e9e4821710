"""A mistake in `experiments train`'s overrides, reported as one sentence like every other command's.

Hydra prints its own errors (its message, the OmegaConf cause, the config search path and a hint about
HYDRA_FULL_ERROR; exit 1) unless HYDRA_FULL_ERROR=1 lets the exception through. `train` lets them through
and turns the ones a user causes (a misspelled key or option, override syntax, a missing value, a job's
`UserError`) into `UserError`. A user who sets HYDRA_FULL_ERROR=1 still gets Hydra's full tracebacks.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager

from experiments.errors import UserError

FULL_ERROR_ENV = "HYDRA_FULL_ERROR"
# Set beside HYDRA_FULL_ERROR=1 when we set it (not the user), for whoever reads that variable to decide
# how much to print (the Optuna sweeper; child processes, which inherit both).
SENTENCES_ENV = "EXPERIMENTS_ERRORS_AS_SENTENCES"
# Hydra's words for sweep syntax in a single run; its hints are on lines a one-line message would drop.
_SEVERAL_VALUES = re.compile(r"Ambiguous value for argument '(?P<override>.+)'")
_SWEEP_WITHOUT_M = re.compile(r"Sweep parameters '(?P<override>.+)' requires --multirun")
_NOT_OPTIONAL = re.compile(r"field '(?P<key>[^']+)' is not Optional")


@contextmanager
def hydra_errors_as_sentences() -> Iterator[None]:
    """Run Hydra's entry point inside; a user's mistake comes out as `UserError`, anything else as is."""
    if os.environ.get(FULL_ERROR_ENV) == "1" and os.environ.get(SENTENCES_ENV) != "1":
        yield  # the user asked for Hydra's full tracebacks
        return
    os.environ[FULL_ERROR_ENV] = "1"
    os.environ[SENTENCES_ENV] = "1"
    try:
        yield
    except Exception as err:
        sentence = user_mistake(err)
        if sentence is None:
            raise
        raise UserError(sentence) from None


def user_mistake(err: BaseException) -> str | None:
    """One sentence for an error the user's overrides caused; None for anything else (a bug)."""
    from hydra.errors import (
        CompactHydraException,
        ConfigCompositionException,
        MissingConfigException,
        OverrideParseException,
    )
    from omegaconf.errors import (
        ConfigAttributeError,
        ConfigKeyError,
        MissingMandatoryValue,
        OmegaConfBaseException,
    )

    cause = err.__cause__
    if isinstance(err, UserError):  # a sweep job's, re-raised by Hydra's sweeper
        return str(err)
    if isinstance(cause, UserError):  # wrapped by `hydra.utils.instantiate`
        return str(cause)
    if isinstance(err, MissingConfigException) and err.missing_cfg_file and err.options is not None:
        group, _, option = err.missing_cfg_file.rpartition("/")
        hint = _close_match(option, err.options)
        return f"{group or 'config'}={option} is not known{hint}; choose one of: {', '.join(err.options)}."
    if isinstance(err, OverrideParseException):
        return (f"could not parse the override {err.override!r} ({_first_line(err)}); "
                "quote lists and strings for the shell, e.g. 'model.hidden_dims=[64,32]'.")
    if isinstance(err, ConfigCompositionException) and (match := _SEVERAL_VALUES.match(str(err))):
        override = match["override"]
        key, _, value = override.partition("=")
        return (f"{override} gives several values: add -m to sweep over them, write {key}=[{value}] for a "
                f"list, or quote it for one string: \"{key}='{value}'\".")
    if isinstance(err, ConfigCompositionException) and (match := _SWEEP_WITHOUT_M.match(str(err))):
        return f"{match['override']} is a sweep: add -m to run it (experiments train -m …)."
    if isinstance(err, ConfigCompositionException) and (match := _NOT_OPTIONAL.search(str(cause))):
        key = match["key"]
        shown = "hydra" if key.startswith("hydra.") else "job"
        return f"{key} cannot be null: give it a value (experiments train --cfg {shown} shows the current one)."
    if isinstance(err, ConfigCompositionException) and isinstance(cause, ConfigKeyError | ConfigAttributeError):
        key = str(cause.full_key)
        siblings = list(cause.parent_node.keys()) if cause.parent_node is not None else []
        hint = _close_match(str(cause.key), [str(k) for k in siblings])
        return f"{key} is not a config key{hint}; `experiments train --cfg job` lists the keys."
    if isinstance(err, MissingMandatoryValue) or isinstance(cause, MissingMandatoryValue):
        missing = err if isinstance(err, MissingMandatoryValue) else cause
        return f"{missing.full_key} has no value; set it on the command line, e.g. {missing.full_key}=…."
    if isinstance(err, OSError) and err.filename and err.strerror:  # e.g. an output folder it cannot create
        return f"{err.strerror}: {err.filename!r}; paths.output_dir=… sets a writable folder for the runs."
    if isinstance(err, CompactHydraException) and not isinstance(err, ConfigCompositionException):
        return " ".join(str(err).split())  # Hydra's mark for "the message alone says it"
    if isinstance(err, ConfigCompositionException) and isinstance(cause, OmegaConfBaseException):
        # "Error merging override k=v" says which override; the cause says what is wrong with it.
        return f"{_first_line(err).rstrip('.')} ({_first_line(cause).rstrip('.')}). Check the key=value overrides."
    if isinstance(err, OmegaConfBaseException) and getattr(err, "full_key", None):
        return f"{err.full_key}: {_sentence(_first_line(err))} Check the key=value overrides."
    if isinstance(err, ConfigCompositionException | OmegaConfBaseException):
        return f"{_sentence(_first_line(err))} Check the key=value overrides."
    return None


def _close_match(word: str, candidates: list[str]) -> str:
    match = difflib.get_close_matches(word, candidates, n=1)
    return f" (did you mean {match[0]!r}?)" if match else ""


def _sentence(text: str) -> str:
    return text if text.endswith((".", "!", "?")) else text + "."


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__
