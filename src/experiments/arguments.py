"""`key=value` arguments of the commands that are not Hydra apps (`eval`, `predict`)."""

from __future__ import annotations

from collections.abc import Sequence

from experiments.errors import UserError

EXAMPLES = {"resume": "RUN_ID", "run_id": "RUN_ID", "ckpt_path": "PATH", "csv": "FILE", "input": "FILE",
            "output": "FILE", "target": "COLUMN", "tracking_uri": "URI"}


def refuse_empty(key: str, value: object) -> None:
    """`resume=` and the like: an empty value is a slip, never a request for the default."""
    if value is not None and not str(value).strip():
        raise UserError(f"{key}= is empty; give it a value ({key}={EXAMPLES.get(key, '…')}) or leave it out.")


def key_values(command: str, argv: Sequence[str], keys: Sequence[str]) -> dict[str, str]:
    """Each argument `key=value` with a known key and a value; anything else is one sentence."""
    values: dict[str, str] = {}
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep or key not in keys:
            raise UserError(f"experiments {command} takes key=value arguments with keys {', '.join(keys)}; "
                            f"got {arg!r}.")
        refuse_empty(key, value)
        values[key] = value
    return values
