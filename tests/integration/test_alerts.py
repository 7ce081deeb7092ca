"""Alerts reach people: Slack, Teams, e-mail and generic-webhook receivers started here on
127.0.0.1 get one alert per rule per run with the run id and the report link and no borrower
data; a receiver that is down or answers 500 does not fail the run, and the failure is logged and
recorded; each rule fires on one side of its threshold and not on the other."""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mlops.alerts import AlertRules, RunFacts, evaluate, load_rules, send_run_alerts
from mlops.errors import ConfigError
from mlops.models import DocumentRecord
from mlops.orchestration import record_task_failure
from mlops.pipeline import run_all
from mlops.sample_data import generate_corpus
from mlops.stages import open_context
from mlops.stages.generate_reports import publish_failure
from tests.fixtures.alert_receivers import HttpReceiver, SmtpReceiver, free_port
from tests.fixtures.platform import CORPUS_SEED, TEST_MAX_FILE_BYTES, Corpus, platform_settings

TEAMS_PATH = "/workflows/wf01/triggers/manual/paths/invoke?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig=s1"
CHANNELS = """
channels:
  slack:   {type: slack, url: "${ALERT_SLACK_WEBHOOK_URL}", severities: [warning, critical]}
  teams:   {type: teams, url: "${ALERT_TEAMS_WEBHOOK_URL}", verify_tls: false, severities: [critical]}
  mail:    {type: email, smtp_host: "${ALERT_SMTP_HOST}", smtp_port: %(smtp_port)d, security: none,
            sender: alerts@example.org, recipients: "${ALERT_EMAIL_TO}", severities: [critical]}
  webhook: {type: webhook, url: "${ALERT_WEBHOOK_URL}", severities: [info, warning, critical]}
"""
RULES = """
rules:
  gate_failed: {severity: critical}
  gate_warning: {severity: warning}
  task_failed: {severity: critical}
  quarantine_rate: {severity: warning, above: 0.2, min_documents: 2}
  processing_time: {severity: warning, above_minutes: 60}
  freshness: {severity: warning, hours: 24}
"""


@pytest.fixture
def receivers(tmp_path, monkeypatch):
    """Every channel pointed at a local receiver through its ${VAR}; yields them by channel."""
    web, teams, smtp = HttpReceiver(), HttpReceiver(tls_dir=tmp_path / "tls"), SmtpReceiver()
    monkeypatch.setenv("ALERT_SLACK_WEBHOOK_URL", web.url("/slack/services/T0/B0/X0"))
    monkeypatch.setenv("ALERT_TEAMS_WEBHOOK_URL", teams.url(TEAMS_PATH))
    monkeypatch.setenv("ALERT_WEBHOOK_URL", web.url("/hook"))
    monkeypatch.setenv("ALERT_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("ALERT_EMAIL_TO", "ops@example.org")
    yield {"web": web, "teams": teams, "smtp": smtp}
    web.close(), teams.close(), smtp.close()


def alert_settings(tmp_path: Path, rules_text: str, smtp_port: int, **overrides):
    rules_file = tmp_path / "alert_rules.yaml"
    rules_file.write_text(CHANNELS % {"smtp_port": smtp_port} + rules_text)
    alerts = {"rules_file": rules_file, "timeout_seconds": 2, "attempts": 2, "backoff_seconds": 0.1}
    return platform_settings(tmp_path, alerts=alerts, **overrides)


def teams_text(body: str) -> str:
    """The text blocks of a Teams Adaptive Card, markdown escapes (``data\\_docs``) undone."""
    card = json.loads(body)["attachments"][0]["content"]
    texts = [block["text"] for block in card["body"] if block.get("type") == "TextBlock"]
    return re.sub(r"\\(.)", r"\1", "\n".join(texts))


def payloads(receivers) -> dict[str, list[str]]:
    web = receivers["web"].posts
    return {
        "slack": [post.body for post in web if post.path.startswith("/slack/")],
        "webhook": [post.body for post in web if post.path.startswith("/hook")],
        "teams": [teams_text(post.body) for post in receivers["teams"].posts],
        "mail": receivers["smtp"].texts(),
    }


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory) -> Corpus:
    """Four documents (OCR is what a pipeline run spends its time on) and the fixed bad inputs."""
    directory = tmp_path_factory.mktemp("alert-corpus")
    rows = generate_corpus(4, CORPUS_SEED, lambda name, data: (directory / name).write_bytes(data),
                           max_file_bytes=TEST_MAX_FILE_BYTES)  # fmt: skip
    return Corpus(directory, {row["filename"]: row for row in rows})


def test_a_failed_gate_run_alerts_each_channel_once_per_rule_with_run_id_and_report_and_no_borrower_data(
    tmp_path, receivers, small_corpus
):
    corpus = small_corpus
    # a critical expectation no run meets: the real pipeline's verdict is FAILED
    settings = alert_settings(tmp_path, RULES, receivers["smtp"].port, quality={"min_mean_confidence": 1.0})
    corpus.upload(open_context("setup", settings).store)
    summary = run_all("manual__alerts", settings)
    assert summary["status"] == "failed"
    quarantined = summary["documents"]["quarantined"] / summary["documents"]["new"]
    assert quarantined > 0.2  # the corpus's bad inputs: quarantine_rate fires too

    sent = payloads(receivers)
    assert len(sent["teams"]) == len(sent["mail"]) == 1  # critical only: gate_failed
    assert len(sent["slack"]) == len(sent["webhook"]) == 2  # gate_failed and quarantine_rate
    report = summary["report"]
    for channel, bodies in sent.items():
        for body in bodies:
            assert "manual__alerts" in body, channel
            assert report in body, channel
        assert any("FAILED run manual__alerts: quality gate FAILED" in body for body in bodies), channel
    hook = [json.loads(body) for body in sent["webhook"]]
    assert {(item["rule"], item["severity"], item["run_id"], item["report"]) for item in hook} == {
        ("gate_failed", "critical", "manual__alerts", report),
        ("quarantine_rate", "warning", "manual__alerts", report),
    }
    borrower_values = {
        str(value)
        for label in corpus.labels.values()
        for name, value in (label.get("fields") or {}).items()
        if name in ("borrower_name", "account_number") and value
    } | set(corpus.labels)  # file names too: they can hold a borrower's name
    assert borrower_values
    everything = "\n".join(body for bodies in sent.values() for body in bodies)
    assert not {value for value in borrower_values if value in everything}

    ctx = open_context("manual__alerts", settings)
    events = [event["details"] for event in ctx.metadata.events("manual__alerts") if event["event"] == "alert_sent"]
    assert sorted((event["rule"], event["channel"]) for event in events) == sorted(
        [("gate_failed", channel) for channel in ("slack", "teams", "mail", "webhook")]
        + [("quarantine_rate", "slack"), ("quarantine_rate", "webhook")]
    )

    # the report written again (a retried task, a second evaluation): nothing new goes out
    published = json.loads(ctx.store.get_bytes("reports/manual__alerts/run_summary.json"))
    outcomes = send_run_alerts(ctx, published, {"report": report})
    assert {outcome["outcome"] for outcome in outcomes} == {"skipped"}
    assert payloads(receivers) == sent


def test_a_receiver_down_or_answering_500_does_not_fail_the_run_and_is_logged_and_recorded(
    tmp_path, receivers, monkeypatch, caplog
):
    failing = HttpReceiver(status=500)
    monkeypatch.setenv("ALERT_SLACK_WEBHOOK_URL", f"http://127.0.0.1:{free_port()}/slack/services/T0/B0/X0")
    monkeypatch.setenv("ALERT_WEBHOOK_URL", failing.url("/hook"))
    settings = alert_settings(tmp_path, "rules:\n  task_failed: {severity: critical}\n", free_port())
    ctx = open_context("manual__down", settings)

    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="mlops.alerts"):
        published = publish_failure(ctx, "acquire_documents", "ObjectStoreError: cannot read landing/Jane Doe loan.pdf")
    assert time.monotonic() - started < 15
    assert published["status"] == "failed"  # the run finished: summary and report written, run closed
    assert ctx.metadata.get_run("manual__down")["status"] == "failed"

    failed = {(event["details"]["rule"], event["details"]["channel"]) for event in ctx.metadata.events("manual__down")
              if event["event"] == "alert_failed"}  # fmt: skip
    assert failed == {("task_failed", "slack"), ("task_failed", "webhook"), ("task_failed", "mail")}
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    for channel in ("slack", "webhook", "mail"):
        assert any(f"alert task_failed for run manual__down could not be sent to channel {channel}" in line
                   for line in warnings), warnings  # fmt: skip
    assert len(failing.posts) == 2  # tried settings.alerts.attempts times, then given up
    assert "Jane Doe" not in failing.posts[0].body  # a task's error message can name a borrower
    assert "task acquire_documents failed (ObjectStoreError; its message is in the task log and the report)" in failing.posts[0].body
    assert len(receivers["teams"].posts) == 1  # the channel that works still gets its alert
    failing.close()

    # once the receiver is back, a later evaluation delivers what failed, and only that
    monkeypatch.setenv("ALERT_WEBHOOK_URL", receivers["web"].url("/hook"))
    summary = json.loads(ctx.store.get_bytes("reports/manual__down/run_summary.json"))
    outcomes = {outcome["channel"]: outcome["outcome"] for outcome in send_run_alerts(ctx, summary, {})}
    assert outcomes == {"slack": "failed", "teams": "skipped", "mail": "failed", "webhook": "sent"}


def test_the_airflow_failure_callback_sends_task_failed_after_the_retries(tmp_path, receivers, monkeypatch):
    settings = alert_settings(tmp_path, "rules:\n  task_failed: {severity: critical}\n", receivers["smtp"].port)
    monkeypatch.setattr("mlops.orchestration.get_settings", lambda: settings)
    monkeypatch.setenv("ALERT_EMAIL_TO", "ops@example.org, audit@example.org")

    class TaskInstance:
        task_id, try_number, map_index = "extract_data", 4, -1

    context = {"run_id": "scheduled__2026-12-01T00:00:00+00:00", "task_instance": TaskInstance(),
               "exception": RuntimeError("OCR worker lost"), "params": {}}  # fmt: skip
    record_task_failure(context)
    mail = receivers["smtp"].texts()
    assert {message["To"] for message in receivers["smtp"].messages} == {"ops@example.org", "audit@example.org"}
    assert "[CRITICAL] task_failed: run scheduled__2026-12-01T00_00_00_00_00" in mail[0]
    assert "task extract_data failed after its retries" in mail[0]
    record_task_failure(context)  # a second callback for the same run: no second alert
    assert len(receivers["smtp"].texts()) == 2


def test_a_late_failure_callback_of_a_taken_over_run_alerts_but_leaves_its_record_alone(
    tmp_path, receivers, monkeypatch
):
    settings = alert_settings(tmp_path, "rules:\n  task_failed: {severity: critical}\n", receivers["smtp"].port)
    monkeypatch.setattr("mlops.orchestration.get_settings", lambda: settings)
    metadata = open_context("killed", settings).metadata
    metadata.acquire_lease("killed", "worker:1", ttl_seconds=0.1)
    metadata.start_run("killed", "fp", "1")
    time.sleep(0.2)
    metadata.acquire_lease("next", "worker:2", ttl_seconds=60)  # its worker died: the next run took over
    metadata.start_run("next", "fp", "1")
    abandoned = metadata.get_run("killed")

    class TaskInstance:
        task_id, try_number, map_index = "extract_data", 4, -1

    record_task_failure({"run_id": "killed", "task_instance": TaskInstance(),
                         "exception": RuntimeError("worker lost"), "params": {}})  # fmt: skip
    assert metadata.get_run("killed") == abandoned  # when and why it stopped, as the takeover wrote it
    assert not open_context("killed", settings).store.exists(f"{settings.prefixes.reports}/latest/run_summary.json")
    assert "[CRITICAL] task_failed: run killed" in receivers["smtp"].texts()[0]


def test_the_rules_file_rejects_unknown_keys_naming_them(tmp_path):
    path = tmp_path / "alert_rules.yaml"
    path.write_text("channels:\n  ops: {type: slack, url: x, colour: red}\nrules:\n  quarantine_rate: {severity: warning, abvoe: 0.2}\n")
    with pytest.raises(ConfigError) as raised:
        load_rules(path)
    assert "channels.ops.colour: unknown key" in str(raised.value)
    assert "rules.quarantine_rate.abvoe: unknown key" in str(raised.value)
    path.write_text("rules:\n  freshnes: {severity: warning, hours: 3}\n")
    with pytest.raises(ConfigError, match=r"rules\.freshnes: unknown key"):
        load_rules(path)


def test_the_shipped_rules_file_is_valid_and_sends_nothing_without_its_variables():
    rules = load_rules(Path(__file__).resolve().parents[2] / "config" / "alert_rules.yaml")
    assert {channel.type for channel in rules.channels.values()} == {"slack", "teams", "email", "webhook"}
    assert all(channel.variables() for channel in rules.channels.values())
    # an SMTP relay without login: ${ALERT_SMTP_USERNAME:-} has an empty default
    assert rules.channels["ops_email"].variables() == ["ALERT_SMTP_HOST", "ALERT_EMAIL_FROM", "ALERT_EMAIL_TO"]


# -- each rule on either side of its threshold ----------------------------------------------------

FACTS = RunFacts(
    run_id="r1", status="success", verdict="SUCCESS run r1: every check passed", failed_task=None,
    documents={"seen": 20, "new": 20, "accepted": 20, "quarantined": 0, "duplicates": 0},
    quarantine_rate=0.0, missing_field_rate=0.0, checked_documents=20,
    metric_values={"extraction.field_accuracy": 0.9}, metric_history={"extraction.field_accuracy": [0.9, 0.9, 0.9]},
    processing_seconds=600.0, hours_since_new_document=1.0,
)  # fmt: skip
THRESHOLDS = AlertRules.model_validate({"rules": {
    "quarantine_rate": {"severity": "warning", "above": 0.2, "min_documents": 5},
    "missing_field_rate": {"severity": "warning", "above": 0.25, "min_documents": 5},
    "accuracy_drop": {"severity": "critical", "runs": 5, "min_runs": 3, "max_drop": 0.05},
    "processing_time": {"severity": "warning", "above_minutes": 30},
    "freshness": {"severity": "warning", "hours": 36},
    "gate_failed": {"severity": "critical"}, "gate_warning": {"severity": "warning"},
    "task_failed": {"severity": "critical"},
}}).rules  # fmt: skip


@pytest.mark.parametrize(
    ("rule", "changes", "fires"),
    [
        ("quarantine_rate", {"quarantine_rate": 0.25}, True),
        ("quarantine_rate", {"quarantine_rate": 0.2}, False),
        ("quarantine_rate", {"quarantine_rate": 0.5, "documents": {"new": 4}}, False),  # too few to judge
        ("missing_field_rate", {"missing_field_rate": 0.3}, True),
        ("missing_field_rate", {"missing_field_rate": 0.2}, False),
        ("accuracy_drop", {"metric_values": {"extraction.field_accuracy": 0.84}}, True),
        ("accuracy_drop", {"metric_values": {"extraction.field_accuracy": 0.86}}, False),
        ("accuracy_drop", {"metric_values": {"extraction.field_accuracy": 0.5},
                           "metric_history": {"extraction.field_accuracy": [0.9, 0.9]}}, False),  # fewer than min_runs
        ("processing_time", {"processing_seconds": 31 * 60.0}, True),
        ("processing_time", {"processing_seconds": 29 * 60.0}, False),
        ("freshness", {"hours_since_new_document": 37.0}, True),
        ("freshness", {"hours_since_new_document": 35.0}, False),
        ("freshness", {"hours_since_new_document": None}, True),  # nothing ever arrived
        ("gate_failed", {"status": "failed"}, True),
        ("gate_failed", {"status": "failed", "failed_task": "extract_data"}, False),  # that is task_failed
        ("gate_warning", {"status": "warning"}, True),
        ("task_failed", {"failed_task": "store_results", "status": "failed"}, True),
    ],
)  # fmt: skip
def test_each_rule_fires_above_its_threshold_and_not_below(rule, changes, fires):
    alerts = evaluate(THRESHOLDS, replace(FACTS, **changes))
    assert (rule in {alert.rule for alert in alerts}) is fires
    assert not evaluate(THRESHOLDS, FACTS)


def test_accuracy_history_and_freshness_are_read_from_the_metadata_store(tmp_path, receivers, backend_settings):
    """accuracy_drop compares with earlier runs' stored metrics; freshness with the newest document
    (SQLite and Postgres)."""
    rules = ("rules:\n  accuracy_drop: {severity: warning, runs: 3, min_runs: 2, max_drop: 0.05}\n"
             "  freshness: {severity: warning, hours: 24}\n")  # fmt: skip
    alerts = alert_settings(tmp_path, rules, receivers["smtp"].port).alerts
    settings = backend_settings.model_copy(update={"alerts": alerts})
    metadata = open_context("setup", settings).metadata
    for number, accuracy in enumerate([0.5, 0.9, 0.92, 0.94]):  # the oldest is beyond `runs`
        metadata.start_run(f"earlier_{number}", "fp", "1")
        metadata.save_metrics(f"earlier_{number}", {"extraction.field_accuracy": accuracy})
    metadata.register_document(
        DocumentRecord(sha256="a" * 64, source_key="landing/x.pdf", original_filename="x.pdf", size_bytes=1,
                       raw_key="raw/aa/" + "a" * 64), run_id="earlier_3")  # fmt: skip

    def alerts_for(run_id: str, accuracy: float, hours_later: float) -> set[str]:
        ctx = open_context(run_id, settings)
        ctx.metadata.start_run(run_id, "fp", "1")
        now = datetime.now(UTC)
        summary = {"run_id": run_id, "status": "success", "status_reasons": [], "error": None,
                   "started_at": now.isoformat(), "finished_at": (now + timedelta(hours=hours_later)).isoformat(),
                   "documents": {"seen": 0, "new": 0, "accepted": 0, "quarantined": 0, "duplicates": 0},
                   "extraction": {"field_accuracy": accuracy}}  # fmt: skip
        return {outcome["rule"] for outcome in send_run_alerts(ctx, summary, {})}

    assert alerts_for("steady", 0.90, 1) == set()  # mean of the last 3 runs is 0.92: a drop of 0.02
    assert alerts_for("dropped", 0.85, 1) == {"accuracy_drop"}  # a drop of 0.07 (the 0.5 run is too old)
    assert alerts_for("stale", 0.95, 30) == {"freshness"}  # the newest document is 30 h old at its report


def test_a_failed_task_whose_report_cannot_be_published_still_alerts(tmp_path, receivers, monkeypatch):
    settings = alert_settings(tmp_path, "rules:\n  task_failed: {severity: critical}\n", receivers["smtp"].port)
    monkeypatch.setattr("mlops.orchestration.get_settings", lambda: settings)

    def store_down(*args, **kwargs):
        raise ConnectionError("object store unreachable")

    monkeypatch.setattr("mlops.stages.generate_reports.publish_failure", store_down)

    class TaskInstance:
        task_id, try_number, map_index = "store_results", 4, -1

    record_task_failure({"run_id": "manual__store_down", "task_instance": TaskInstance(),
                         "exception": ConnectionError("object store unreachable"), "params": {}})  # fmt: skip
    hook = [json.loads(post.body) for post in receivers["web"].posts if post.path.startswith("/hook")]
    assert [(item["rule"], item["run_id"]) for item in hook] == [("task_failed", "manual__store_down")]
    assert "task store_results failed (ConnectionError; its message is in the task log and the report)" in hook[0]["message"]
