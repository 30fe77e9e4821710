"""The comparison report of `experiments compare`: runs from MLflow → per-fix statistics → files."""
