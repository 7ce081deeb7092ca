"""`dvc repro` end to end, in a throw-away copy of the working tree.

1. the first `dvc repro` runs every stage and writes run_summary.json (the DVC metrics);
2. a second `dvc repro` runs nothing and `dvc status` is clean;
3. changing `extract.ocr_dpi` (read by extract_data only) reruns extract_data and the stages
   downstream of it, never acquire/validate/preprocess.

A small corpus (6 good documents plus the generator's bad ones) keeps this near two minutes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mlops.stages import STAGE_NAMES

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
RUN_ID = "dvc"
UPSTREAM = STAGE_NAMES[: STAGE_NAMES.index("extract_data")]
FROM_EXTRACT = STAGE_NAMES[STAGE_NAMES.index("extract_data") :]
SUMMARY_KEYS = {
    "run_id",
    "status",
    "pipeline_version",
    "settings_fingerprint",
    "documents",
    "quarantine_reasons",
    "extraction",
    "validation",
    "anomalies",
    "bias",
    "bias_passed",
    "stage_seconds",
}


def _copy_working_tree(target: Path) -> None:
    """Tracked and new (not ignored) files as they are in the working tree, committed or not."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    if not (BIN / "dvc").exists():
        pytest.skip(f"dvc is not installed next to {sys.executable}")
    if shutil.which("tesseract") is None:
        pytest.skip("tesseract is not installed")
    home = tmp_path_factory.mktemp("dvc-home")
    work = tmp_path_factory.mktemp("dvc-repo")
    _copy_working_tree(work)
    env = {key: value for key, value in os.environ.items() if not key.startswith(("MLOPS_", "DVC_"))}
    env.update(
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",  # `python` in dvc.yaml is this venv's
        MLOPS_WORKERS="2",
        DVC_NO_ANALYTICS="1",
        DVC_GLOBAL_CONFIG_DIR=str(home / "global"),
        DVC_SYSTEM_CONFIG_DIR=str(home / "system"),
        DVC_SITE_CACHE_DIR=str(home / "site-cache"),
        GIT_CONFIG_NOSYSTEM="1",
        HOME=str(home),
    )
    subprocess.run(["git", "init", "-q"], cwd=work, env=env, check=True)
    _dvc(work, env, "config", "--local", "core.check_update", "false")
    subprocess.run(
        [str(BIN / "python"), "-m", "mlops", "sample-data", "--count", "6", "--seed", "11"],
        cwd=work,
        env=env,
        check=True,
        capture_output=True,
    )
    return work, env


def _dvc(work: Path, env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [str(BIN / "dvc"), *args], cwd=work, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"dvc {' '.join(args)} failed:\n{output[-6000:]}"
    return output


def _ran(output: str) -> list[str]:
    return re.findall(r"Running stage '([a-z_]+)'", output)


def _skipped(output: str) -> list[str]:
    return re.findall(r"Stage '([a-z_]+)' didn't change, skipping", output)


def _summary_mtimes(work: Path) -> dict[str, int]:
    return {
        name: (work / "data/runs" / RUN_ID / name / "summary.json").stat().st_mtime_ns for name in STAGE_NAMES
    }


def test_dvc_repro_runs_skips_and_reruns_only_what_changed(repo):
    work, env = repo

    # 1. every stage runs, in the DAG's order, and the run summary is the DVC metric
    first = _dvc(work, env, "repro")
    assert _ran(first) == list(STAGE_NAMES)
    summary = json.loads((work / "data/reports" / RUN_ID / "run_summary.json").read_text())
    assert SUMMARY_KEYS <= set(summary)
    assert summary["run_id"] == RUN_ID
    counts = summary["documents"]
    assert counts["seen"] == counts["new"] + counts["skipped"]
    assert counts["new"] == counts["accepted"] + counts["quarantined"] + counts["duplicates"]
    assert counts["accepted"] >= 4 and counts["quarantined"] >= 1
    assert summary["extraction"]["documents"] == counts["accepted"]
    assert set(STAGE_NAMES[:-1]) <= set(summary["stage_seconds"])
    assert (work / "data/reports" / RUN_ID / "report.html").is_file()
    metrics = json.loads(_dvc(work, env, "metrics", "show", "--json"))
    assert "run_summary.json" in json.dumps(metrics)
    assert "dvc.lock" in {path.name for path in work.iterdir()}

    # 2. nothing changed: nothing runs, the workspace matches dvc.lock
    second = _dvc(work, env, "repro")
    assert _ran(second) == []
    assert _skipped(second) == list(STAGE_NAMES)
    assert json.loads(_dvc(work, env, "status", "--json")) == {}

    # 3. a param only extract_data reads: it and everything downstream rerun, nothing upstream
    before = _summary_mtimes(work)
    params = work / "params.yaml"
    text, replaced = re.subn(r"(?m)^(\s+ocr_dpi:\s*)300\b", r"\g<1>200", params.read_text())
    assert replaced == 1, "params.yaml has no `extract.ocr_dpi: 300` to change"
    params.write_text(text)
    status = json.loads(_dvc(work, env, "status", "--json"))
    assert set(status) == {"extract_data"}, status
    third = _dvc(work, env, "repro")
    assert _ran(third) == list(FROM_EXTRACT)
    assert _skipped(third) == list(UPSTREAM)
    after = _summary_mtimes(work)
    assert all(after[name] == before[name] for name in UPSTREAM)
    assert all(after[name] > before[name] for name in FROM_EXTRACT)
    assert json.loads(_dvc(work, env, "status", "--json")) == {}
