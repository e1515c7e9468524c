"""Run directories and the SQLite results store."""

from slimbench.runs.rundir import default_runs_root, make_run_dir
from slimbench.runs.store import DB_NAME, ResultsStore, RunRecord

__all__ = ["DB_NAME", "ResultsStore", "RunRecord", "default_runs_root", "make_run_dir"]
