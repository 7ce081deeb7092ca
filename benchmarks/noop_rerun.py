"""The no-op rerun: ``python -m mlops run`` on the embedded default (local directory + SQLite)
when every landing file is already processed. The issue's target: < 5 s over 10,000 documents.

The N landing files are small distinct files; they are recorded as processed the way
acquire_documents and store_results leave them (document registered and stored, landing object
claimed by a finished run, the pipeline version's watermark), through the metadata store's own
calls, which takes seconds where pushing N documents through every stage would take an hour. The
rerun itself is the real CLI in a fresh process, timed from start to exit, and must report
nothing new.

    .venv/bin/python benchmarks/noop_rerun.py [--documents 10000] [--repeat 3] [--kilobytes 0] [--profile OUT]

A measurement, not a test: it never fails on a number.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mlops.config import Settings
from mlops.io.metadata import MetadataStore, RunStatus
from mlops.io.objects import LocalDirStore
from mlops.models import DocumentFormat, DocumentRecord, DocumentStatus

FIRST_RUN = "bench-first-run"


def measure_noop(documents: int, repeat: int = 3, profile: Path | None = None, kilobytes: int = 0) -> dict[str, float]:
    """Seconds of ``python -m mlops run`` with nothing new over ``documents`` known landing files:
    ``seconds`` is the median of ``repeat`` reruns, ``setup_seconds`` what recording them took.
    ``kilobytes``: pad each landing file to this size (real documents weigh 50 KB-5 MB)."""
    with tempfile.TemporaryDirectory(prefix="noop-rerun-") as folder:
        data_dir = Path(folder) / "data"
        env = os.environ | {"MLOPS_DATA_DIR": str(data_dir), "TQDM_DISABLE": "1",
                            "MLOPS_EXTRACT__MODEL_DIR": os.environ.get("MLOPS_EXTRACT__MODEL_DIR",
                                                                       str(REPO / "data" / "models"))}  # fmt: skip
        for name in ("MLOPS_METADATA__URL", "MLOPS_OBJECT_STORE__BACKEND"):
            env.pop(name, None)
        started = time.perf_counter()
        known_landing_area(data_dir, documents, kilobytes)
        setup_seconds = time.perf_counter() - started
        timings = []
        for attempt in range(repeat):
            command = [sys.executable, "-m", "mlops", "run", "--run-id", f"bench-noop-{attempt}"]
            if profile is not None and attempt == repeat - 1:
                command[1:1] = ["-m", "cProfile", "-o", str(profile)]
            started = time.perf_counter()
            done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, check=False)
            timings.append(time.perf_counter() - started)
            summary = data_dir / "reports" / "latest" / "run_summary.json"
            if done.returncode != 0 or json.loads(summary.read_text())["documents"]["new"] != 0:
                raise RuntimeError(f"the rerun failed or found something new (exit {done.returncode}): "
                                   f"{done.stderr[-2000:]}")  # fmt: skip
    return {"seconds": round(statistics.median(timings), 2), "slowest_seconds": round(max(timings), 2),
            "documents": documents, "setup_seconds": round(setup_seconds, 1)}  # fmt: skip


def known_landing_area(data_dir: Path, documents: int, kilobytes: int = 0) -> None:
    """``documents`` distinct files under landing/, recorded as processed by a finished run."""
    padding = os.urandom(kilobytes * 1024)
    landing = data_dir / "landing"
    for index in range(documents):
        path = landing / f"batch-{index // 1000:03d}" / f"loan-{index:06d}.pdf"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"%PDF-1.4\n% loan document " + str(index).encode() + b"\n" + padding + b"\n%%EOF\n")
    settings = Settings(data_dir=data_dir)
    store = LocalDirStore(data_dir)
    with MetadataStore(settings.metadata_url) as metadata:
        metadata.migrate()
        metadata.start_run(FIRST_RUN, "bench", settings.pipeline_version)
        shas = []
        for info in store.list(settings.prefixes.landing):
            sha256 = hashlib.sha256((data_dir / info.key).read_bytes()).hexdigest()
            raw_key = f"{settings.prefixes.raw}/{sha256[:2]}/{sha256}"
            document = DocumentRecord(sha256=sha256, source_key=info.key, original_filename=info.name,
                                      size_bytes=info.size, raw_key=raw_key, format=DocumentFormat.PDF, pages=1)  # fmt: skip
            metadata.register_document(document, FIRST_RUN)
            metadata.claim_landing_object(FIRST_RUN, info.key, info.etag, info.size, sha256, False)
            metadata.update_document(sha256, status=DocumentStatus.STORED)
            shas.append(sha256)
        metadata.mark_processed(shas, settings.pipeline_version, FIRST_RUN)
        metadata.finish_run(FIRST_RUN, RunStatus.SUCCESS, {"new": documents})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--documents", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--profile", type=Path, help="cProfile the last rerun into this file")
    parser.add_argument("--kilobytes", type=int, default=0, help="pad each landing file to about this size")
    args = parser.parse_args(argv)
    print(json.dumps(measure_noop(args.documents, args.repeat, args.profile, args.kilobytes), indent=2))


if __name__ == "__main__":
    main()
