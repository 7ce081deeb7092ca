"""`dvc repro` end to end, in a throw-away copy of the working tree.

1. the first `dvc repro` trains the extractor (train_extractor), runs every pipeline stage and
   writes run_summary.json (the DVC metrics);
2. a second `dvc repro` runs nothing and `dvc status` is clean;
3. changing `extract.ocr_dpi` (read by train_extractor, whose scans are OCRed at it, and by
   extract_data) retrains the model and reruns extract_data and the stages downstream of it,
   never acquire/validate/preprocess.

The copy trains its own model through its own `train_extractor` stage rather than pointing
extract.model_dir at the prebuilt one: only then does step 3 show a change reaching the pipeline
through the model, and the model is a DVC output like in a real checkout. Its params.yaml asks for a
tiny training corpus (one text PDF per family and document type, no loan scans, three non-loan forms
per pool, the folds unchanged) so training takes seconds, not minutes; its accuracy is not asserted.
A small corpus (6 good documents plus the generator's bad ones) keeps the pipeline runs short.
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
import yaml

from mlops.stages import STAGE_NAMES

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
RUN_ID = "dvc"
TRAIN_STAGE = "train_extractor"
UPSTREAM = STAGE_NAMES[: STAGE_NAMES.index("extract_data")]
FROM_EXTRACT = STAGE_NAMES[STAGE_NAMES.index("extract_data") :]
# Three non-loan forms: the fewest the document-type model's 3-fold calibration accepts for "unknown".
TINY_TRAINING = {"text_documents": 1, "scan_documents": 0, "non_loan_documents": 3}
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
    _use_tiny_training(work / "params.yaml")
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


def _use_tiny_training(params: Path) -> None:
    """Edit the copy's params.yaml in place (comments kept) to train on a tiny corpus."""
    text = params.read_text()
    for key, value in TINY_TRAINING.items():
        text, replaced = re.subn(rf"(?m)^(\s+{key}:\s*)\d+\b", rf"\g<1>{value}", text)
        assert replaced == 1, f"params.yaml has no `train.{key}` to change"
    params.write_text(text)
    train = yaml.safe_load(text)["train"]
    assert {key: train[key] for key in TINY_TRAINING} == TINY_TRAINING and train["folds"]


def _in_order(ran: list[str], stages: list[str]) -> list[str]:
    """The stages of ``stages`` that ran, in the order they ran."""
    return [name for name in ran if name in stages]


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

    # 1. the extractor is trained, every stage runs in the DAG's order, and the run summary is the DVC metric
    first = _dvc(work, env, "repro")
    ran = _ran(first)
    assert sorted(ran) == sorted([TRAIN_STAGE, *STAGE_NAMES]), ran
    assert _in_order(ran, list(STAGE_NAMES)) == list(STAGE_NAMES)
    assert ran.index(TRAIN_STAGE) < ran.index("extract_data")
    model = work / "data/models/v1/extractor.joblib"
    assert model.is_file() and (model.parent / "metrics.json").is_file()
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
    assert sorted(_skipped(second)) == sorted([TRAIN_STAGE, *STAGE_NAMES])
    assert _in_order(_skipped(second), list(STAGE_NAMES)) == list(STAGE_NAMES)
    assert json.loads(_dvc(work, env, "status", "--json")) == {}

    # 3. a param train_extractor and extract_data read: the model is retrained, extract_data and
    #    everything downstream rerun, nothing upstream of extract_data in the pipeline
    before = _summary_mtimes(work)
    model_before = model.stat().st_mtime_ns
    params = work / "params.yaml"
    text, replaced = re.subn(r"(?m)^(\s+ocr_dpi:\s*)300\b", r"\g<1>200", params.read_text())
    assert replaced == 1, "params.yaml has no `extract.ocr_dpi: 300` to change"
    params.write_text(text)
    status = json.loads(_dvc(work, env, "status", "--json"))
    assert set(status) == {TRAIN_STAGE, "extract_data"}, status
    third = _dvc(work, env, "repro")
    assert _ran(third) == [TRAIN_STAGE, *FROM_EXTRACT]
    assert _skipped(third) == list(UPSTREAM)
    assert model.stat().st_mtime_ns > model_before
    after = _summary_mtimes(work)
    assert all(after[name] == before[name] for name in UPSTREAM)
    assert all(after[name] > before[name] for name in FROM_EXTRACT)
    assert json.loads(_dvc(work, env, "status", "--json")) == {}
