"""`hydra/sweeper: experiments_optuna` — Optuna (5.x) Bayesian search as a Hydra sweeper.

Public, import-light helpers for the rest of the project:
- `optuna_summary_files(sweep_dir)`: the summary files a sweep wrote (to log as artifacts);
- `TrialLink` / `report_and_check`: how a job reports intermediate values to its trial;
- `job_failure(job_return)`: the exception a Hydra job ended with (modules `jobs`, and `storage` for
  the study's storage URL).
"""

from .jobs import job_failure
from .summary_files import SUMMARY_FILE_NAMES, optuna_summary_files
from .trial_link import TrialLink, report_and_check

__all__ = ["SUMMARY_FILE_NAMES", "TrialLink", "job_failure", "optuna_summary_files", "report_and_check"]
