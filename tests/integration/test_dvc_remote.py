"""The DVC remote configured from the platform's settings: data pushed by `dvc push` lands in
the platform's bucket on a real S3 server, and `dvc pull` brings it back."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.integration
DVC = str(Path(sys.executable).with_name("dvc"))


def test_dvc_push_and_pull_through_the_configured_remote(tmp_path, s3_server, s3_store):
    def run(*command):
        done = subprocess.run(command, cwd=tmp_path, env=env, check=False, capture_output=True, text=True)
        assert done.returncode == 0, f"{' '.join(command)} exited {done.returncode}: {done.stderr[-3000:]}"
        return done.stdout

    env = {**os.environ, **s3_server.env(), "MLOPS_OBJECT_STORE__BUCKET": s3_store.bucket}
    run("git", "init", "-q")
    run(DVC, "init", "-q")
    (tmp_path / ".dvc" / "config").write_text((REPO / ".dvc" / "config").read_text())
    run(sys.executable, "-m", "mlops", "dvc-remote")
    assert "secret_access_key" not in (tmp_path / ".dvc" / "config").read_text()

    data = tmp_path / "data"
    data.mkdir()
    (data / "table.csv").write_text("sha256,pages\nabc,2\n")
    run(DVC, "add", "-q", "data")
    run(DVC, "push", "-q")
    assert list(s3_store.list("dvc")), "dvc push wrote nothing under s3://<bucket>/dvc/"

    (data / "table.csv").unlink()
    shutil.rmtree(tmp_path / ".dvc" / "cache")
    run(DVC, "pull", "-q")
    assert (data / "table.csv").read_text() == "sha256,pages\nabc,2\n"
