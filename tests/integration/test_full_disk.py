"""A full disk under data_dir is an infrastructure error naming the path (exit 4), not a crash:
the run is closed, no half-written object stays behind, and once there is room again the next
run takes the same document."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlops.io.metadata import MetadataStore
from tests.conftest import REPO


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 512 KiB filesystem (tmpfs), unmounted afterwards."""
    mount = tmp_path / "disk"
    mount.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mount)],
                             capture_output=True, text=True, check=False)  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"mounting a small tmpfs needs root: {mounted.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def run_cli(data_dir: Path, database: Path) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("MLOPS_")}
    env |= {"MLOPS_DATA_DIR": str(data_dir), "MLOPS_METADATA__URL": f"sqlite:///{database}", "MLOPS_WORKERS": "1"}
    return subprocess.run([sys.executable, "-m", "mlops", "run"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600, check=False)  # fmt: skip


def test_a_full_disk_stops_the_run_as_an_infrastructure_error_naming_the_path(small_disk, tmp_path):
    landing = small_disk / "landing"
    landing.mkdir()
    (landing / "scan.png").write_bytes(os.urandom(300 * 1024))  # copying it to raw/ needs 300 KiB more
    database = tmp_path / "metadata.db"

    full = run_cli(small_disk, database)

    assert full.returncode == 4, full.stderr[-3000:]
    assert "Traceback" not in full.stderr
    assert f"No space left on device at {small_disk}/" in full.stderr
    assert not [path for path in small_disk.rglob(".tmp-objectstore-*")]
    (run,) = MetadataStore(f"sqlite:///{database}").runs()
    assert run["finished_at"] is not None and run["outcome"] == "error"

    subprocess.run(["mount", "-o", "remount,size=8m", str(small_disk)], check=True)
    again = run_cli(small_disk, database)

    assert again.returncode == 0, again.stderr[-3000:]
    assert "documents: seen 1, new 1" in again.stdout  # the same document, taken again
    assert (landing / "scan.png").exists()
