"""A tracking server that stops answering: each write gives up within seconds and the run ends with one
sentence saying so, instead of MLflow's default of retrying in silence for minutes and a traceback."""

from __future__ import annotations

import logging
import os
import re

from experiments.errors import ReportedError

# MLflow's own settings, read at each request. Its defaults (7 retries, backoff factor 2, 120 s per
# request) keep one write waiting for minutes; these give up after 3 retries 0, 2 and 4 s apart, each
# request waiting at most 10 s (docs/sweeps.md says how long that is in practice). A user's values win.
SERVER_WAITS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}


def bound_server_waits() -> None:
    """Set MLflow's retry settings to ours unless the user set them (inherited by every job and rank)."""
    for name, value in SERVER_WAITS.items():
        os.environ.setdefault(name, value)
    # urllib3 logs each retry as a warning with the whole connection error; the sentence below says it once.
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)


class TrackingServerUnavailable(ReportedError):
    """The tracking server did not answer a write within the bounded wait; printed as one line, exit 1."""


def _chain(err: BaseException | None) -> list[BaseException]:
    seen: list[BaseException] = []
    while err is not None and all(err is not other for other in seen):
        seen.append(err)
        err = err.__cause__ or err.__context__
    return seen


def server_unreachable(err: BaseException) -> bool:
    """Whether `err` (or what it was raised from) is a request to the tracking server that got no answer:
    refused, timed out, or only error statuses until the retries ran out."""
    import requests

    gone = (requests.exceptions.ConnectionError, requests.exceptions.Timeout, requests.exceptions.RetryError)
    return any(isinstance(link, gone) for link in _chain(err))


def unreachable_sentence(err: BaseException) -> str:
    """Which server did not answer and how long MLflow tried; callers add what became of their run."""
    server = "the tracking server"
    for link in _chain(err):
        found = re.search(r"API request to (https?://[^/\s]+)", str(link))
        if found:
            server = f"the tracking server at {found.group(1)}"
            break
    retries = os.environ.get("MLFLOW_HTTP_REQUEST_MAX_RETRIES", SERVER_WAITS["MLFLOW_HTTP_REQUEST_MAX_RETRIES"])
    timeout = os.environ.get("MLFLOW_HTTP_REQUEST_TIMEOUT", SERVER_WAITS["MLFLOW_HTTP_REQUEST_TIMEOUT"])
    return (f"{server} did not answer (gave up after {retries} retries of at most {timeout} s; "
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES and MLFLOW_HTTP_REQUEST_TIMEOUT set this)")


def describe_tracking_error(err: BaseException) -> str:
    """The sentence above for a server that did not answer, else the error as MLflow worded it."""
    return unreachable_sentence(err) if server_unreachable(err) else f"{type(err).__name__}: {err}"


def in_one_sentence(err: BaseException, in_sweep: bool) -> BaseException:
    """`err` as the job reports it: a server that did not answer becomes one sentence saying what became of
    the run; any other error is itself."""
    if not server_unreachable(err):
        return err
    if in_sweep:
        return TrackingServerUnavailable(f"{unreachable_sentence(err)}: this job fails (a run it left open is closed "
                                         "FAILED as the sweep ends, if the server is back by then).")
    return TrackingServerUnavailable(f"{unreachable_sentence(err)}: the run is not recorded in full; run it again "
                                     "once the server is back.")
