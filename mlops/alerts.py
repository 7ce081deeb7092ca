"""Alerts that reach people: rules evaluated on a run's summary, sent to Slack, Microsoft Teams,
e-mail and generic webhooks.

``config/alert_rules.yaml`` (``alerts.rules_file``) names the channels, the severities each one
takes, and the rules with their thresholds and severities; secrets and URLs are ``${VAR}``
references resolved from the environment, then ``.env``. A channel whose variables are unset is
not configured and sends nothing (logged at INFO), so the shipped file is safe everywhere.

One interface, :func:`send_run_alerts`, called by the report stage once a run's summary and
report are written (a task that failed after its retries publishes its summary through the same
path). Each rule fires at most once per run and channel: every delivery is recorded as an
``alert_sent`` or ``alert_failed`` audit event, and a rule already sent to a channel for that
run is not sent again. A receiver that is down or refuses is tried a bounded number of times,
then logged (WARNING naming channel and rule) and recorded; it never fails the run.

Alerts carry run-level facts only (run id, counts, rates, the verdict line, links): never a
field value, a file name or a task's error message, which can all name a borrower.

Transports are the field's libraries: ``slack_sdk``'s WebhookClient for Slack (any webhook URL),
apprise for Teams (Workflows webhooks, Adaptive Cards), e-mail (``mailto://``/``mailtos://``) and
the generic JSON webhook (``json://``/``jsons://``).
"""

from __future__ import annotations

import logging
import math
import os
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import quote, urlencode, urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mlops.config import project_dir
from mlops.errors import ConfigError, DatasetNotFound
from mlops.models import REQUIRED_FIELDS
from mlops.run_summary import verdict_line

if TYPE_CHECKING:
    from mlops.config import AlertSettings
    from mlops.stages import StageContext

log = logging.getLogger("mlops.alerts")
AUDIT_STAGE = "alerts"
SEVERITIES = ("info", "warning", "critical")
Severity = Literal["info", "warning", "critical"]
VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:-[^}]*)?\}")  # ${VAR} or ${VAR:-default}


# -- configuration ------------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Channel(_Strict):
    severities: list[Severity] = Field(["warning", "critical"], min_length=1)

    def variables(self) -> list[str]:
        """The ``${VAR}`` names this channel needs (``${VAR:-default}`` has a default)."""
        values = [value for value in self.model_dump().values() if isinstance(value, str)]
        return [name for value in values for name, default in VARIABLE.findall(value) if not default]


class SlackChannel(_Channel):
    type: Literal["slack"]
    url: str = Field(description="incoming-webhook URL, e.g. ${ALERT_SLACK_WEBHOOK_URL}")


class TeamsChannel(_Channel):
    type: Literal["teams"]
    url: str = Field(description="Teams Workflows webhook URL (https://.../workflows/<id>/triggers/manual/paths/invoke?...)")
    verify_tls: bool = True


class WebhookChannel(_Channel):
    type: Literal["webhook"]
    url: str = Field(description="http(s) URL the alert is POSTed to as JSON")
    verify_tls: bool = True


class EmailChannel(_Channel):
    type: Literal["email"]
    smtp_host: str
    smtp_port: int = Field(587, ge=1, le=65535)
    security: Literal["starttls", "ssl", "none"] = "starttls"
    username: str = ""
    password: str = ""
    sender: str = Field(description="From: address")
    recipients: str = Field(description="To: addresses, comma-separated")


Channel = Annotated[SlackChannel | TeamsChannel | WebhookChannel | EmailChannel, Field(discriminator="type")]


class Rule(_Strict):
    severity: Severity
    enabled: bool = True


class RateRule(Rule):
    above: float = Field(ge=0, le=1, description="fires when the rate is strictly above this share")
    min_documents: int = Field(1, ge=1, description="no alert on fewer documents than this")


class AccuracyDropRule(Rule):
    metric: str = "extraction.field_accuracy"
    runs: int = Field(5, ge=1, description="compare with the mean of this many earlier runs")
    min_runs: int = Field(1, ge=1, description="no alert with fewer earlier runs than this")
    max_drop: float = Field(ge=0, le=1, description="fires when the metric is more than this below the mean")


class ProcessingTimeRule(Rule):
    above_minutes: float = Field(gt=0)


class FreshnessRule(Rule):
    hours: float = Field(gt=0, description="fires when no new document arrived for this long")


class ResultsFreshnessRule(Rule):
    hours: float = Field(gt=0, description="fires when no run has completed for this long")


class AnomalyRateRule(Rule):
    max_rise: float = Field(ge=0, le=1, description="fires when the newest run's rate is more than this above the mean")
    min_runs: int = Field(3, ge=1, description="no alert with fewer earlier runs than this")


class Rules(_Strict):
    gate_failed: Rule | None = None
    gate_warning: Rule | None = None
    task_failed: Rule | None = None
    quarantine_rate: RateRule | None = None
    missing_field_rate: RateRule | None = None
    accuracy_drop: AccuracyDropRule | None = None
    processing_time: ProcessingTimeRule | None = None
    freshness: FreshnessRule | None = None
    results_freshness: ResultsFreshnessRule | None = None
    drift: Rule | None = None
    anomaly_rate: AnomalyRateRule | None = None


# Evaluated by the data_quality_monitoring DAG (mlops.monitoring.checks) once per monitoring window.
MONITORING_RULES = ("freshness", "results_freshness", "drift", "anomaly_rate")
MONITORING_STATUS = "monitoring"  # RunFacts.status of a monitoring window


class AlertRules(_Strict):
    channels: dict[Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]+$")], Channel] = {}
    rules: Rules = Rules()


def load_rules(path: Path) -> AlertRules:
    """Parse and validate the rules file; a missing file means no alerts (said at WARNING).
    Raises ConfigError naming the file, the key and the fix."""
    if not path.is_file():
        log.warning("no alert rules file at %s (alerts.rules_file): no alerts are sent", path)
        return AlertRules()
    try:
        return AlertRules.model_validate(yaml.safe_load(path.read_text()) or {})
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    except ValidationError as error:
        lines = [f"{path}: invalid alert rules:"]
        for item in error.errors():
            # a channel's discriminated type shows up in the location: channels.<name>.<type>.<key>
            parts = [str(part) for part in item["loc"] if part not in ("slack", "teams", "webhook", "email")]
            dotted = ".".join(parts)
            if item["type"] == "extra_forbidden":
                lines.append(f"  {dotted}: unknown key. Fix: check its spelling against the comments in {path}.")
            else:
                lines.append(f"  {dotted}: {item['msg']} (got {item.get('input')!r}).")
        raise ConfigError("\n".join(lines)) from None


def resolve(value: str, environ: dict[str, str]) -> str:
    """Replace ``${VAR}`` and ``${VAR:-default}`` references; raises KeyError naming the first
    unset (or empty) variable without a default."""

    def lookup(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if environ.get(name):
            return environ[name]
        if default is not None:
            return default[2:]
        raise KeyError(name)

    return VARIABLE.sub(lookup, value)


def environment() -> dict[str, str]:
    """``.env`` overlaid by the process environment (the environment wins, as for Settings)."""
    from dotenv import dotenv_values

    values = {key: value for key, value in dotenv_values(project_dir() / ".env").items() if value is not None}
    return values | dict(os.environ)


# -- what an alert says -------------------------------------------------------------------------


@dataclass(frozen=True)
class RunFacts:
    """Run-level facts the rules look at: counts, rates and links, nothing about a borrower."""

    run_id: str
    status: str
    verdict: str
    failed_task: str | None
    documents: dict[str, int]
    quarantine_rate: float | None
    missing_field_rate: float | None
    checked_documents: int
    metric_values: dict[str, float]
    metric_history: dict[str, list[float]]
    processing_seconds: float | None
    hours_since_new_document: float | None
    links: dict[str, str] = field(default_factory=dict)
    # monitoring across runs only (None: not measured, never fires)
    hours_since_completed_run: float | None = None
    drift_headline: str | None = None
    anomaly_rate: float | None = None
    anomaly_rate_history: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class Alert:
    rule: str
    severity: str
    reason: str


def evaluate(rules: Rules, facts: RunFacts) -> list[Alert]:
    """The rules this run breaks, in the order of the rules file's model."""
    alerts: list[Alert] = []

    def fire(name: str, reason: str) -> None:
        rule = getattr(rules, name)
        alerts.append(Alert(name, rule.severity, reason))

    def active(name: str) -> Any:
        rule = getattr(rules, name)
        return rule if rule is not None and rule.enabled else None

    if active("task_failed") and facts.failed_task:
        fire("task_failed", f"task {facts.failed_task} failed after its retries")
    if active("gate_failed") and facts.status == "failed" and not facts.failed_task:
        fire("gate_failed", "the run's verdict is FAILED")
    if active("gate_warning") and facts.status == "warning":
        fire("gate_warning", "the run's verdict is WARNING")
    documents = facts.documents.get("new", 0)
    rule = active("quarantine_rate")
    rate = facts.quarantine_rate
    if rule and rate is not None and documents >= rule.min_documents and rate > rule.above:
        fire("quarantine_rate", f"{rate:.0%} of the {documents} new documents were quarantined (alert above {rule.above:.0%})")
    rule = active("missing_field_rate")
    rate, checked = facts.missing_field_rate, facts.checked_documents
    if rule and rate is not None and checked >= rule.min_documents and rate > rule.above:
        fire("missing_field_rate", f"{rate:.0%} of the fields their document types carry are missing over {checked} "
                                   f"documents (alert above {rule.above:.0%})")  # fmt: skip
    if rule := active("accuracy_drop"):
        current = facts.metric_values.get(rule.metric)
        history = [value for value in facts.metric_history.get(rule.metric, []) if not math.isnan(value)]
        if current is not None and not math.isnan(current) and len(history) >= rule.min_runs:
            mean = sum(history) / len(history)
            if mean - current > rule.max_drop:
                fire("accuracy_drop", f"{rule.metric} {current:.3f} is {mean - current:.3f} below the mean {mean:.3f} "
                                      f"of the last {len(history)} runs (alert above a drop of {rule.max_drop:g})")  # fmt: skip
    rule = active("processing_time")
    if rule and facts.processing_seconds is not None and facts.processing_seconds > rule.above_minutes * 60:
        fire("processing_time", f"the run took {facts.processing_seconds / 60:.1f} min (alert above {rule.above_minutes:g} min)")
    if rule := active("freshness"):
        hours = facts.hours_since_new_document
        if hours is None:
            fire("freshness", "no document has ever arrived")
        elif hours > rule.hours:
            fire("freshness", f"no new document for {hours:.1f} h (alert after {rule.hours:g} h)")
    rule = active("results_freshness")
    hours = facts.hours_since_completed_run
    if rule and hours is not None and hours > rule.hours:
        fire("results_freshness", f"no run has completed for {hours:.1f} h (alert after {rule.hours:g} h)")
    if active("drift") and facts.drift_headline:
        fire("drift", facts.drift_headline)
    rule = active("anomaly_rate")
    history = facts.anomaly_rate_history
    if rule and facts.anomaly_rate is not None and len(history) >= rule.min_runs:
        mean = sum(history) / len(history)
        if facts.anomaly_rate - mean > rule.max_rise:
            fire("anomaly_rate", f"{facts.anomaly_rate:.0%} of the newest run's documents have findings, "
                                 f"{mean:.0%} on average over the {len(history)} runs before "
                                 f"(alert above a rise of {rule.max_rise:.0%})")  # fmt: skip
    return alerts


def message(alert: Alert, facts: RunFacts) -> tuple[str, str]:
    """Title and plain-text body of an alert."""
    counts = facts.documents
    subject = facts.run_id if facts.status == MONITORING_STATUS else f"run {facts.run_id}"
    title = f"[{alert.severity.upper()}] {alert.rule}: {subject}"
    lines = [facts.verdict, f"Rule {alert.rule} ({alert.severity}): {alert.reason}."]
    if counts:  # a monitoring window has none
        lines.append("Documents: " + ", ".join(f"{counts.get(key, 0)} {key}"
                                               for key in ("seen", "new", "accepted", "quarantined", "duplicates")))  # fmt: skip
    lines += [f"{name.replace('_', ' ').capitalize()}: {link}" for name, link in facts.links.items()]
    return title, "\n".join(lines)


# -- gathering the facts ------------------------------------------------------------------------


def run_facts(ctx: StageContext, summary: dict[str, Any], links: dict[str, str], rules: Rules) -> RunFacts:
    """What the rules need, from the summary, the run's catalog and the metadata store."""
    documents = {key: int(value) for key, value in (summary.get("documents") or {}).items()}
    error = summary.get("error") or None
    new = documents.get("new", 0)
    missing_rate, checked = missing_fields(ctx) if rules.missing_field_rate else (None, 0)
    metric_values, metric_history = {}, {}
    if rules.accuracy_drop is not None:
        metric = rules.accuracy_drop.metric
        current = summary_metric(summary, metric)
        if current is not None:
            metric_values[metric] = current
            metric_history[metric] = metric_history_of(ctx, metric, rules.accuracy_drop.runs)
    finished = _instant(summary.get("finished_at"))
    started = _instant(summary.get("started_at"))
    return RunFacts(
        run_id=ctx.run_id,
        status=summary["status"],
        verdict=safe_verdict_line(summary),
        failed_task=error["task"] if error else None,
        documents=documents,
        quarantine_rate=documents.get("quarantined", 0) / new if new else None,
        missing_field_rate=missing_rate,
        checked_documents=checked,
        metric_values=metric_values,
        metric_history=metric_history,
        processing_seconds=(finished - started).total_seconds() if finished and started else None,
        hours_since_new_document=hours_since_new_document(ctx, finished) if rules.freshness else None,
        links=links,
    )


def safe_verdict_line(summary: dict[str, Any]) -> str:
    """The run's verdict line, with a failed task's error message cut to its exception type:
    messages name documents, and a document's name can be a borrower's."""
    reasons = list(summary.get("status_reasons") or [])
    error = summary.get("error")
    if error and reasons and reasons[0].startswith(f"task {error['task']} failed"):
        kind = str(error.get("message", "")).split(":", 1)[0].strip() or "error"
        reasons[0] = f"task {error['task']} failed ({kind}; its message is in the task log and the report)"
    return verdict_line({"run_id": summary["run_id"], "status": summary["status"], "status_reasons": reasons})


def missing_fields(ctx: StageContext) -> tuple[float | None, int]:
    """Share of the fields each document's type carries (models.REQUIRED_FIELDS) that came out
    empty, over the run's documents of a known type; and how many documents that is."""
    try:
        table = ctx.catalog.load_parts("extract_data")
    except DatasetNotFound:
        return None, 0
    expected = missing = checked = 0
    for row in table.to_dict("records") if len(table) else []:
        fields = REQUIRED_FIELDS.get(row.get("doc_type") or "")
        if not fields:
            continue
        checked += 1
        expected += len(fields)
        missing += sum(1 for name in fields if _empty(row.get(name)))
    return (missing / expected if expected else None), checked


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value == ""


def summary_metric(summary: dict[str, Any], metric: str) -> float | None:
    from mlops.run_summary import metrics

    try:
        value = metrics(summary).get(metric)
    except (KeyError, TypeError):
        return None
    return None if value is None else float(value)


def metric_history_of(ctx: StageContext, metric: str, runs: int) -> list[float]:
    """``metric`` of the last ``runs`` earlier runs that recorded it, newest first."""
    import sqlalchemy as sa

    from mlops.io.metadata import PipelineRun, RunMetric

    this_run = ctx.metadata.get_run(ctx.run_id)
    query = (
        sa.select(RunMetric.value)
        .join(PipelineRun, PipelineRun.run_id == RunMetric.run_id)
        .where(RunMetric.name == metric, RunMetric.value.is_not(None), PipelineRun.run_id != ctx.run_id)
        .order_by(PipelineRun.started_at.desc())
        .limit(runs)
    )
    if this_run:
        query = query.where(PipelineRun.started_at < this_run["started_at"])
    with ctx.metadata.engine.connect() as conn:
        return [float(value) for (value,) in conn.execute(query)]


def hours_since_new_document(ctx: StageContext, now: datetime | None) -> float | None:
    """Hours from the newest document the platform ever registered to ``now`` (None: none yet)."""
    import sqlalchemy as sa

    from mlops.io.metadata import Document

    query = sa.select(Document.created_at).order_by(Document.created_at.desc()).limit(1)
    with ctx.metadata.engine.connect() as conn:
        newest = conn.execute(query).scalar()
    if newest is None or now is None:
        return None
    return max(0.0, (now - newest).total_seconds() / 3600)


def _instant(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(value) if value else None
    except (TypeError, ValueError):
        return None


# -- sending ------------------------------------------------------------------------------------


class DeliveryError(Exception):
    """A receiver did not take the alert (down, refused, timed out)."""


def deliver(channel: Any, title: str, body: str, alert: Alert, facts: RunFacts, settings: AlertSettings) -> None:
    """Send one alert through one channel, with the settings' timeout; raise DeliveryError."""
    env = environment()
    if isinstance(channel, SlackChannel):
        _send_slack(resolve(channel.url, env), title, body, settings.timeout_seconds)
        return
    if isinstance(channel, EmailChannel):
        url = _email_url(channel, env)
    elif isinstance(channel, TeamsChannel):
        url = _with_query(resolve(channel.url, env), verify=_yes_no(channel.verify_tls))
    else:
        url = _json_url(resolve(channel.url, env), channel.verify_tls, alert, facts)
    _send_apprise(_with_timeouts(url, settings.timeout_seconds), title, body, alert.severity)


def _send_slack(url: str, title: str, body: str, timeout: float) -> None:
    from slack_sdk.webhook import WebhookClient

    text = f"*{title}*\n{body}"
    try:
        response = WebhookClient(url, timeout=math.ceil(timeout)).send(
            text=text, blocks=[{"type": "section", "text": {"type": "mrkdwn", "text": text}}]
        )
    except Exception as error:  # urllib raises URLError, TimeoutError, ... for a receiver that is down
        raise DeliveryError(f"{type(error).__name__}: {error}") from error
    if response.status_code != 200:
        raise DeliveryError(f"HTTP {response.status_code}: {str(response.body)[:200]}")


def _send_apprise(url: str, title: str, body: str, severity: str) -> None:
    import apprise

    logging.getLogger("apprise").setLevel(logging.WARNING)  # "Notifying 1 service(s)" per alert: ours says it
    notifier = apprise.Apprise()
    if not notifier.add(url):
        raise DeliveryError("apprise does not accept this channel's URL: check the channel's settings")
    notify_type = {"info": apprise.NotifyType.INFO, "warning": apprise.NotifyType.WARNING}.get(
        severity, apprise.NotifyType.FAILURE
    )
    with apprise.LogCapture(level=logging.WARNING) as captured:
        sent = notifier.notify(body=body, title=title, notify_type=notify_type, body_format=apprise.NotifyFormat.TEXT)
    if not sent:
        detail = " ".join(captured.getvalue().split())[:300] if hasattr(captured, "getvalue") else ""
        raise DeliveryError(detail or "the receiver did not accept the alert")


def _email_url(channel: EmailChannel, env: dict[str, str]) -> str:
    host = resolve(channel.smtp_host, env)
    username, password = resolve(channel.username, env), resolve(channel.password, env)
    credentials = f"{quote(username, safe='')}:{quote(password, safe='')}@" if username else ""
    scheme = "mailto" if channel.security == "none" else "mailtos"
    query = {
        "smtp": host,
        "from": resolve(channel.sender, env),
        "to": ",".join(address for address in re.split(r"[\s,;]+", resolve(channel.recipients, env)) if address),
        "mode": {"none": "insecure", "ssl": "ssl", "starttls": "starttls"}[channel.security],
    }
    return f"{scheme}://{credentials}{host}:{channel.smtp_port}/?{urlencode(query)}"


def _json_url(url: str, verify_tls: bool, alert: Alert, facts: RunFacts) -> str:
    """apprise's json:// posts {version, title, message, type}; ``:key=value`` adds run-level keys."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise DeliveryError(f"a webhook URL must be http(s)://, not {parts.scheme}://")
    scheme = "jsons" if parts.scheme == "https" else "json"
    extras = {
        ":rule": alert.rule,
        ":severity": alert.severity,
        ":run_id": facts.run_id,
        ":status": facts.status,
        **{f":{name}": link for name, link in facts.links.items()},
    }
    query = "&".join(filter(None, [parts.query, urlencode(extras | {"verify": _yes_no(verify_tls)})]))
    return f"{scheme}://{parts.netloc}{parts.path or '/'}?{query}"


def _with_query(url: str, **params: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}{urlencode(params)}"


def _with_timeouts(url: str, seconds: float) -> str:
    return _with_query(url, cto=f"{seconds:g}", rto=f"{seconds:g}")


def _yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


def send_run_alerts(
    ctx: StageContext, summary: dict[str, Any], links: dict[str, str], only: tuple[str, ...] | None = None
) -> list[dict[str, str]]:
    """Evaluate the rules (or ``only`` these) on a published run and send what fires, once per
    rule and channel. An alert that cannot be sent is logged and recorded; the run goes on. A
    rules file that does not validate raises ConfigError (after the report is written).
    Returns what happened: [{rule, channel, outcome}], outcome sent | failed | skipped."""
    try:
        return _send_run_alerts(ctx, summary, links, only)
    except ConfigError:
        raise
    except Exception:
        log.exception("alerts for run %s could not be evaluated", ctx.run_id)
        return []


def send_task_failure_alert(ctx: StageContext, task: str, message: str) -> list[dict[str, str]]:
    """The task_failed alert alone, from what the failure callback knows, for a failed run whose
    summary could not be published (the store may be what is down). Never raises."""
    summary = {"run_id": ctx.run_id, "status": "failed", "status_reasons": [f"task {task} failed: {message}"],
               "error": {"task": task, "message": message}, "documents": {}}  # fmt: skip
    try:
        return _send_run_alerts(ctx, summary, ctx.links, ("task_failed",))
    except Exception:
        log.exception("the task_failed alert for run %s could not be sent", ctx.run_id)
        return []


def _send_run_alerts(
    ctx: StageContext, summary: dict[str, Any], links: dict[str, str], only: tuple[str, ...] | None
) -> list[dict[str, str]]:
    settings = ctx.settings.alerts
    if not settings.enabled:
        return []
    config = load_rules(settings.rules_file)
    if not config.channels:
        return []
    rules = config.rules
    if only is not None:
        rules = Rules.model_validate({name: getattr(rules, name) for name in only})
    facts = run_facts(ctx, summary, links, rules)
    return send_alerts(ctx, config, evaluate(rules, facts), facts)


def send_alerts(ctx: StageContext, config: AlertRules, alerts: list[Alert], facts: RunFacts) -> list[dict[str, str]]:
    """Send ``alerts`` to every configured channel that takes their severity, once per rule and
    channel for ``ctx.run_id`` (a run, or a monitoring window): what was sent before is skipped."""
    if not alerts or not ctx.settings.alerts.enabled:
        return []
    settings = ctx.settings.alerts
    env = environment()
    sent_before = {
        (event["details"].get("rule"), event["details"].get("channel"))
        for event in ctx.metadata.events(ctx.run_id)
        if event["event"] == "alert_sent"
    }
    outcomes: list[dict[str, str]] = []
    unconfigured: set[str] = set()
    for alert in alerts:
        title, body = message(alert, facts)
        for name, channel in config.channels.items():
            if alert.severity not in channel.severities:
                continue
            if (alert.rule, name) in sent_before:
                outcomes.append({"rule": alert.rule, "channel": name, "outcome": "skipped"})
                continue
            unset = [variable for variable in channel.variables() if not env.get(variable)]
            if unset:
                unconfigured.add(f"{name} ({', '.join(unset)} unset)")
                continue
            outcomes.append(_deliver_recorded(ctx, name, channel, title, body, alert, facts, settings))
    if unconfigured:
        log.info("alerts %s not sent to the channels that are not configured: %s",
                 ", ".join(sorted({alert.rule for alert in alerts})), "; ".join(sorted(unconfigured)))  # fmt: skip
    return outcomes


def _deliver_recorded(
    ctx: StageContext, name: str, channel: Any, title: str, body: str, alert: Alert, facts: RunFacts,
    settings: AlertSettings,
) -> dict[str, str]:  # fmt: skip
    from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential

    attempt = retry(
        stop=stop_after_attempt(settings.attempts),
        wait=wait_exponential(multiplier=settings.backoff_seconds, max=settings.backoff_seconds * 4),
        retry=retry_if_exception_type(DeliveryError),
        reraise=True,
    )(deliver)
    details = {"rule": alert.rule, "channel": name, "transport": channel.type, "severity": alert.severity}
    try:
        attempt(channel, title, body, alert, facts, settings)
    except (DeliveryError, KeyError) as error:
        reason = f"{error.args[0]} is not set" if isinstance(error, KeyError) else str(error)
        log.warning("alert %s for run %s could not be sent to channel %s (%s) after %d attempts: %s",
                    alert.rule, ctx.run_id, name, channel.type, settings.attempts, reason)  # fmt: skip
        ctx.audit(AUDIT_STAGE, "alert_failed", **details, attempts=settings.attempts, error=reason[:500])
        return {"rule": alert.rule, "channel": name, "outcome": "failed"}
    log.info("alert %s (%s) for run %s sent to channel %s", alert.rule, alert.severity, ctx.run_id, name)
    ctx.audit(AUDIT_STAGE, "alert_sent", **details)
    return {"rule": alert.rule, "channel": name, "outcome": "sent"}
