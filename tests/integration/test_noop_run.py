"""A run with nothing new stays cheap (issue 11): it validates nothing, so it never imports
Great Expectations (seconds and ~200 MB), yet still reports its verdict."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.integration

RUN_AND_REPORT_IMPORTS = """
import json, sys
from mlops.pipeline import run_all
summary = run_all("nothing_new")
print(json.dumps({"new": summary["documents"]["new"], "status": summary["status"],
                  "gx_imported": "great_expectations" in sys.modules}))
"""


def test_a_run_with_nothing_new_does_not_import_great_expectations(tmp_path):
    (tmp_path / "data" / "landing").mkdir(parents=True)
    env = os.environ | {
        "MLOPS_DATA_DIR": str(tmp_path / "data"),
        "MLOPS_EXTRACT__MODEL_DIR": os.environ.get("MLOPS_EXTRACT__MODEL_DIR", str(REPO / "data" / "models")),
    }
    env.pop("MLOPS_METADATA__URL", None)
    done = subprocess.run([sys.executable, "-c", RUN_AND_REPORT_IMPORTS], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    assert outcome == {"new": 0, "status": "warning", "gx_imported": False}, done.stderr[-2000:]
