"""Where the stages write, relative to the project root. The library takes these paths from here only; dvc.yaml
names the same outputs (tests/test_dvc_deps.py checks that they agree). They are not parameters: DVC's stage
outputs must be known to dvc.yaml, and a path set in two places drifts."""

PREPARED_DIR = "data/prepared"  # <dataset>.pt and its checksum file (prepare)
RUNS_DIR = "runs"  # runs/<method>/summary.csv and runs/<method>/<run key>.parquet (train@<method>)
ANALYSIS_DIR = "analysis"  # tables, plots/ (the DVC plots' data) (analyze)
PLOTS_DIR = f"{ANALYSIS_DIR}/plots"
METRICS_FILE = "metrics.json"  # headline numbers and claim verdicts (analyze)
REPORTS_DIR = "reports"  # report.md, index.html, figures/ (report)
STATE_DIR = ".whywarmup"  # not DVC's: partial sweeps, resume state, MLflow run ids and wall times (vary per run)
