"""What a finished Hydra job returned: its exception, through `JobReturn`'s public property."""

from __future__ import annotations

import contextlib
import io

from hydra.core.utils import JobReturn, JobStatus


def job_failure(job: JobReturn) -> BaseException | None:
    """The exception a job ended with, or None when it completed.

    `JobReturn.return_value` re-raises a failed job's exception and first writes "Error executing job
    with overrides …" to stderr; that line is kept out of the console (a pruned trial is no error).
    """
    if job.status == JobStatus.COMPLETED:
        return None
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            job.return_value  # noqa: B018 - the property raises the job's exception
    except BaseException as error:  # noqa: BLE001 - whatever the job raised is its outcome
        return error
    return None
