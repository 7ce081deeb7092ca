"""`python -m mlops monitor` (the data_quality_monitoring DAG's checks) over a real metadata store
(SQLite and Postgres) with the shipped alert rules: OK on a fresh landing area and clean runs,
even while a pipeline run holds the lease; ALERT on a stale landing area, a drifted run and a
rising anomaly rate, each alert reaching a local webhook once per monitoring window."""

from __future__ import annotations

import json
import os
import time

import pytest
from click.testing import CliRunner

from mlops.cli import cli
from mlops.models import Finding
from tests.fixtures.alert_receivers import HttpReceiver
from tests.unit.labelled_tables import labelled_table, store_run

pytestmark = pytest.mark.integration
CLEAN_SEEDS = (1, 2, 4, 5, 6)  # the last is NO DRIFT against the others (test_drift_command)


@pytest.fixture
def webhook(monkeypatch):
    receiver = HttpReceiver()
    for name in ("ALERT_SLACK_WEBHOOK_URL", "ALERT_TEAMS_WEBHOOK_URL", "ALERT_SMTP_HOST"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ALERT_WEBHOOK_URL", receiver.url("/hook"))
    monkeypatch.setenv("MLOPS_ALERTS__BACKOFF_SECONDS", "0")
    yield receiver
    receiver.close()


def monitor(expected_exit: int) -> tuple[list[str], dict]:
    result = CliRunner().invoke(cli, ["monitor", "--json"])
    assert result.exit_code == expected_exit, result.output
    lines = result.output.splitlines()
    return lines, json.loads("\n".join(lines[1:-1]))


def land(tmp_path, name: str, hours_old: float = 0) -> None:
    path = tmp_path / "data" / "landing" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"%PDF-1.4 stand-in")
    moment = time.time() - hours_old * 3600
    os.utime(path, (moment, moment))


def store_clean_runs(store) -> None:
    for seed in CLEAN_SEEDS:
        frame = labelled_table(seed)
        store_run(store, f"clean-{seed}", frame)
        store.replace_findings(f"clean-{seed}", [finding(frame["sha256"].iloc[0])])


def finding(sha256: str) -> Finding:
    return Finding(sha256=sha256, field="principal", value=None, detector="rules", severity="warning", reason="test")


def test_ok_beside_a_live_run_then_a_stale_landing_area_alerts_once_per_window(cli_store, tmp_path, webhook):
    store_clean_runs(cli_store)
    land(tmp_path, "labels.jsonl")  # landing_ignore: not a document, its age does not count
    land(tmp_path, "statement-1.pdf", hours_old=2)
    cli_store.acquire_lease("scheduled__pipeline", "worker:1", ttl_seconds=600)  # a pipeline run is live

    lines, report = monitor(0)

    assert lines[0] == (
        "OK: newest landing object 2.0 h old; newest run completed 0.0 h ago; "
        "NO DRIFT in run clean-6: 39 checks against 4 baseline runs; "
        "4% of the newest run's documents have anomaly findings"
    )
    assert report["landing"]["objects"] == 1
    assert [point["run_id"] for point in report["anomaly_trend"]["runs"]] == [f"clean-{seed}" for seed in CLEAN_SEEDS]
    assert webhook.posts == []
    assert cli_store.lease()["run_id"] == "scheduled__pipeline"  # monitoring neither took nor freed it

    land(tmp_path, "statement-1.pdf", hours_old=50)
    lines, report = monitor(5)

    assert lines[0] == "ALERT: no new document for 50.0 h (alert after 36 h)"
    assert lines[-1] == f"report:  {report['report']}"
    assert report["report"].startswith(f"file://{tmp_path / 'data' / 'reports' / 'monitoring'}/")
    [post] = webhook.posts
    alert = json.loads(post.body)
    assert (alert["rule"], alert["severity"], alert["run_id"]) == ("freshness", "warning", report["window"])
    assert "[WARNING] freshness: monitoring__" in alert["title"] and "no new document for 50.0 h" in alert["message"]

    lines, again = monitor(5)  # the next hour, same window: the alert is not sent again
    assert lines[0] == "ALERT: no new document for 50.0 h (alert after 36 h)"
    assert len(webhook.posts) == 1
    assert again["deliveries"] == [{"rule": "freshness", "channel": "ops_webhook", "outcome": "skipped"}]
    latest = json.loads((tmp_path / "data" / "reports" / "monitoring" / "latest.json").read_text())
    assert latest["verdict"] == "ALERT" and latest["checked_at"] == again["checked_at"]
    dashboard = tmp_path / "data" / "reports" / "dashboard.html"  # regenerated on ALERT too
    assert again["dashboard"] == f"file://{dashboard}"
    assert "Last run PASSED · 0 of the last 5 runs failed" in dashboard.read_text()


def test_a_drifted_run_with_many_findings_alerts_drift_and_anomaly_rate(cli_store, tmp_path, webhook):
    store_clean_runs(cli_store)
    land(tmp_path, "statement-1.pdf")
    shifted = labelled_table(7).assign(principal=lambda frame: frame["principal"] * 3)
    store_run(cli_store, "shifted", shifted)
    cli_store.replace_findings("shifted", [finding(sha) for sha in shifted["sha256"].iloc[: len(shifted) // 2]])

    lines, report = monitor(5)

    assert lines[0].startswith("ALERT: DRIFT in run shifted: 1 field drifted against 5 baseline runs: principal; ")
    assert lines[0].endswith("48% of the newest run's documents have findings, 4% on average over the 5 runs "
                             "before (alert above a rise of 15%)")  # fmt: skip
    assert report["drift"]["drifted_fields"] == ["principal"]
    written = json.loads((tmp_path / "data" / "reports" / "shifted" / "drift.json").read_text())  # for the dashboard
    assert written["verdict"] == "DRIFT" and written["run_id"] == "shifted"
    assert report["anomaly_trend"]["slope_per_run"] > 0
    assert sorted(json.loads(post.body)["rule"] for post in webhook.posts) == ["anomaly_rate", "drift"]
