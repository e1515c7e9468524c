"""Studies: experiments as pipelines of stages in YAML, run locally or on Ray, compared and reported."""

from slimbench.study.compare import load_rows, pareto_front, plot_comparison, plotted_front, select, to_csv, to_markdown
from slimbench.study.keep import keep_experiment
from slimbench.study.merge import MergeReport, merge_studies
from slimbench.study.report import write_report
from slimbench.study.runner import StageState, run_study, study_status
from slimbench.study.spec import Experiment, Study, load_study

__all__ = ["Experiment", "MergeReport", "StageState", "Study", "keep_experiment", "load_rows", "load_study",
           "merge_studies", "pareto_front",
           "plot_comparison", "plotted_front", "run_study", "select", "study_status", "to_csv", "to_markdown",
           "write_report"]
