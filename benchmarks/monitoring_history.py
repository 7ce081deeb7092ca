"""How long the monitoring checks take over a long history: N stored runs (default 100) on SQLite
and on Postgres, each as store_results and generate_reports leave it (24-document extractions and
their field statistics, counts, metrics, findings, quarantine decisions, stage timings, a report,
every fifth run a drift.json), then each check of the data_quality_monitoring DAG, the publish
step, the dashboard over the default 20 runs and over all N, ``python -m mlops monitor`` in a fresh
process (imports included), and with ``--airflow`` the whole ``airflow dags test
data_quality_monitoring``.

    .venv/bin/python benchmarks/monitoring_history.py [--runs 100] [--repeat 3] [--airflow]
        [--backends sqlite,postgres] [--postgres-admin-url URL]

Runs are stored the way the tests store them (tests/unit/labelled_tables.py: the sample corpus's
planned values, no page rendered). Postgres: a temporary database on the server of
``--postgres-admin-url`` (default ``MLOPS_TEST_POSTGRES_ADMIN_URL``, as scripts/test-services.sh
prints it), dropped afterwards. Every figure is the median of ``--repeat`` timings, in seconds.
A measurement, not a test: it never fails on a number.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TQDM_DISABLE", "1")
for channel in ("ALERT_WEBHOOK_URL", "ALERT_SLACK_WEBHOOK_URL", "ALERT_TEAMS_WEBHOOK_URL", "ALERT_SMTP_HOST"):
    os.environ.pop(channel, None)  # measure the checks, not a webhook

STAGES = (("validate_documents", None, 2.0), ("extract_data", 0, 30.0), ("extract_data", 1, 28.0),
          ("generate_reports", None, 1.0))  # fmt: skip


def store_history(metadata, reports: Path, runs: int) -> None:
    from mlops.models import Finding
    from tests.unit.labelled_tables import STATUS_OF_VERDICT, labelled_table, store_run

    for n in range(runs):
        run_id = f"bench-{n:03d}"
        frame = labelled_table(n + 1)
        verdict = "failed" if n % 7 == 6 else "passed"
        store_run(metadata, run_id, frame, verdict=verdict)
        counts = {"seen": 24, "new": len(frame) + 2, "accepted": len(frame), "quarantined": 2, "duplicates": 0}
        metadata.finish_run(run_id, STATUS_OF_VERDICT[verdict], counts, verdict=verdict)
        metadata.save_metrics(run_id, {"validation.score": 0.6 if verdict == "failed" else 0.97})
        metadata.replace_findings(run_id, [
            Finding(sha256=sha, field="principal", value="1", detector="rules", severity="warning", reason="odd")
            for sha in frame["sha256"].iloc[: 1 + n % 3]])  # fmt: skip
        for stage, batch, seconds in STAGES:
            metadata.record_event(run_id, stage, "stage_finished", details={"seconds": seconds, "batch": batch})
        for sha, reason in ((f"{n:062x}01", "corrupt"), (f"{n:062x}02", "encrypted")):
            metadata.record_event(run_id, "validate_documents", "quarantined", sha256=sha, details={"reason": reason})
        (reports / run_id).mkdir(parents=True)
        (reports / run_id / "report.html").write_text(f"<!DOCTYPE html><title>{run_id}</title>")
        if n % 5 == 4:
            check = {"field": "ocr_confidence", "statistic": "ks", "value": 0.2 + n % 3 / 3, "threshold": 0.58}
            drift = {"verdict": "NO DRIFT", "drifted": [], "checks": [check]}
            (reports / run_id / "drift.json").write_text(json.dumps(drift))


@contextlib.contextmanager
def database(backend: str, data_dir: Path, admin_url: str | None) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{data_dir / 'metadata' / 'metadata.db'}"
        return
    from near_duplicates import throwaway_postgres  # this directory is the script's: sys.path[0]

    with throwaway_postgres(admin_url) as url:
        yield url


def median_seconds(action: Callable[[], object], repeat: int) -> float:
    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        timings.append(time.perf_counter() - started)
    return round(statistics.median(timings), 3)


def measure(backend: str, runs: int, repeat: int, airflow: bool, admin_url: str | None) -> dict[str, float]:
    from mlops.config import get_settings
    from mlops.io.metadata import MetadataStore
    from mlops.io.objects import open_object_store
    from mlops.monitoring import checks
    from mlops.monitoring.dashboard import write_dashboard

    with tempfile.TemporaryDirectory(prefix="mlops-bench-monitoring-") as folder:
        data_dir = Path(folder) / "data"
        (data_dir / "landing").mkdir(parents=True)
        (data_dir / "landing" / "statement-1.pdf").write_bytes(b"%PDF-1.4 stand-in")
        with database(backend, data_dir, admin_url) as url:
            env = {"MLOPS_DATA_DIR": str(data_dir), "MLOPS_METADATA__URL": url}
            os.environ.update(env)
            get_settings.cache_clear()
            settings = get_settings()
            metadata = MetadataStore.from_settings(settings)
            metadata.migrate()
            started = time.perf_counter()
            store_history(metadata, data_dir / "reports", runs)
            figures = {"store_history": round(time.perf_counter() - started, 1)}
            now = datetime.now(UTC)
            store = open_object_store(settings)
            results = {}
            for name in checks.CHECK_NAMES:
                figures[f"check {name}"] = median_seconds(
                    lambda name=name: results.__setitem__(name, checks.run_check(name, now, settings)), repeat)
            figures["publish (verdict, alerts, report)"] = median_seconds(lambda: checks.publish(results, now, settings), repeat)
            figures["dashboard, 20 runs"] = median_seconds(lambda: write_dashboard(store, metadata, settings, 20), repeat)
            figures[f"dashboard, {runs} runs"] = median_seconds(lambda: write_dashboard(store, metadata, settings, runs), repeat)
            figures["monitor() in process"] = median_seconds(lambda: checks.monitor(settings=settings), repeat)
            command = [sys.executable, "-m", "mlops", "monitor"]
            cli_env = {**os.environ, **env}
            figures["python -m mlops monitor"] = median_seconds(lambda: cli(command, cli_env), repeat)
            if airflow:
                figures["airflow dags test data_quality_monitoring"] = airflow_dags_test(cli_env, Path(folder))
            metadata.dispose()
    return figures


def cli(command: list[str], env: dict[str, str]) -> None:
    done = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, check=False)
    if done.returncode not in (0, 5):  # OK or ALERT
        raise RuntimeError(f"{' '.join(command)} exited {done.returncode}: {done.stderr[-2000:]}")


def airflow_dags_test(env: dict[str, str], folder: Path) -> float:
    """One whole ``airflow dags test`` (parse, seven tasks in-process, XCom) on a fresh Airflow home."""
    airflow = str(Path(sys.executable).parent / "airflow")
    env = {**env, "AIRFLOW_HOME": str(folder / "airflow"), "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
           "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}  # fmt: skip
    subprocess.run([airflow, "db", "migrate"], env=env, cwd=REPO, capture_output=True, check=True)
    started = time.perf_counter()
    done = subprocess.run([airflow, "dags", "test", "data_quality_monitoring"], env=env, cwd=REPO,
                          capture_output=True, text=True, check=False)  # fmt: skip
    seconds = round(time.perf_counter() - started, 1)
    if "DagRun Finished" not in done.stdout + done.stderr:
        print((done.stdout + done.stderr)[-2000:], file=sys.stderr)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--postgres-admin-url")
    parser.add_argument("--airflow", action="store_true", help="also time one airflow dags test of the DAG")
    args = parser.parse_args()
    backends = args.backends.split(",")
    table = {backend: measure(backend, args.runs, args.repeat, args.airflow, args.postgres_admin_url)
             for backend in backends}  # fmt: skip
    print(f"{args.runs} stored runs, median of {args.repeat}, seconds")
    print(f"{'':45}" + "".join(f"{backend:>10}" for backend in backends))
    for name in table[backends[0]]:
        print(f"{name:45}" + "".join(f"{table[backend][name]:>10}" for backend in backends))


if __name__ == "__main__":
    main()
