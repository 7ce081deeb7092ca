"""The CLI guides: stages listed in --help, unknown run ids refused (exit 2) with the known
ones named and nothing left behind, recent runs listed, the verdict first and JSON on request."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from mlops.cli import cli
from mlops.config import get_settings
from mlops.io.metadata import MetadataStore
from mlops.stages import STAGE_NAMES


@pytest.fixture
def platform(monkeypatch, tmp_path):
    """An empty embedded-default platform under tmp_path, its landing prefix empty."""
    monkeypatch.setenv("MLOPS_DATA_DIR", str(tmp_path / "data"))
    get_settings.cache_clear()
    yield tmp_path / "data"
    get_settings.cache_clear()


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


def run_ids() -> list[str]:
    return [row["run_id"] for row in MetadataStore.from_settings(get_settings()).runs()]


def test_stage_help_lists_every_stage():
    result = invoke("stage", "--help")
    assert result.exit_code == 0
    for name in STAGE_NAMES:
        assert name in result.output.replace("\n", "").replace(" ", "")


@pytest.mark.parametrize(
    "command",
    [("summary", "--run-id", "nope"), ("stage", "check_bias", "--run-id", "nope"), ("audit-export", "--run-id", "nope")],
)
def test_an_unknown_run_id_exits_2_naming_the_known_runs_and_leaves_no_row(platform, command):
    assert invoke("run", "--run-id", "cli_first").exit_code == 0  # an empty landing area: WARNING

    result = invoke(*command)

    assert result.exit_code == 2, result.output
    assert "no run 'nope' in the metadata store (recent runs: cli_first;" in result.output
    assert run_ids() == ["cli_first"]


def test_runs_lists_recent_runs_newest_first_with_their_verdict(platform):
    assert invoke("runs").output.startswith("no runs yet")
    for run_id in ("cli_a", "cli_b"):
        assert invoke("run", "--run-id", run_id).exit_code == 0

    lines = invoke("runs").output.splitlines()

    assert [line.split()[0] for line in lines] == ["cli_b", "cli_a"]
    assert lines[0].split()[1] == "warning" and "new 0, accepted 0, quarantined 0" in lines[0]


def test_run_prints_the_verdict_counts_and_report_and_the_summary_only_with_json(platform):
    short = invoke("run", "--run-id", "cli_short").stdout.splitlines()
    assert short[0].startswith("WARNING run cli_short: no documents found under landing prefix")
    assert short[1] == "documents: seen 0, new 0, skipped 0, accepted 0, quarantined 0, duplicates 0"
    assert short[2] == f"report:  {(platform / 'reports' / 'cli_short' / 'report.html').as_uri()}"
    assert len(short) == 3

    full = invoke("run", "--run-id", "cli_full", "--json").stdout
    body = full[full.index("{") : full.rindex("}") + 1]
    assert json.loads(body)["run_id"] == "cli_full"
