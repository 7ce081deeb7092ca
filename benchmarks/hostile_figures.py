"""Figures for the hostile corpus (tests/unit/hostile_corpus.py) through the whole pipeline: files
by outcome and reason, the slowest file of each worker stage, and the peak memory of each worker.

    .venv/bin/python benchmarks/hostile_figures.py [--workers 2] [--out FILE]

Every stage runs in-process (``mlops.pipeline.run_all``) on a fresh data directory (local store,
SQLite). The sandboxed workers of validate_documents, preprocess_documents and extract_data run
their real function wrapped by :func:`timed`, which records per document the seconds it took and
the worker's peak RSS so far (``ru_maxrss``, Tesseract's included: OCR runs inside the extract
worker). A document whose worker was killed (timeout, memory cap) records nothing; its quarantine
reason says so. A measurement, not a test: it never fails on a number.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
WORKER_FUNCTIONS = {  # stage -> the module its stage looks the workers' function up in, and its name
    "validate_documents": ("mlops.stages.validate_documents", "inspect_document"),
    "preprocess_documents": ("mlops.stages.preprocess_documents", "measure_document"),
    "extract_data": ("mlops.extraction.extractors", "extract_document"),
}


def timed(stage: str, function: tuple[str, str], records: str, job: Any) -> Any:
    """In the worker: ``function(job)`` (by module and name: the worker imports it unwrapped), then
    one JSON line on how long it took and the RSS peaks."""
    module, name = function
    started = time.perf_counter()
    try:
        return getattr(importlib.import_module(module), name)(job)
    finally:
        line = {"stage": stage, "sha256": job.sha256, "seconds": time.perf_counter() - started, "pid": os.getpid(),
                "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}  # fmt: skip
        with open(Path(records) / f"{os.getpid()}.jsonl", "a") as out:
            out.write(json.dumps(line) + "\n")


def run(workers: int, data_dir: Path) -> dict[str, Any]:
    os.environ.update({
        "MLOPS_DATA_DIR": str(data_dir), "MLOPS_WORKERS": str(workers), "MLOPS_OBJECT_STORE__BACKEND": "local",
        "MLOPS_OBJECT_STORE__LOCAL_ROOT": str(data_dir), "MLOPS_METADATA__URL": f"sqlite:///{data_dir / 'metadata.db'}",
        "MLOPS_GATE__FAIL_RUN_ON": "never", "TQDM_DISABLE": "1",
        "MLOPS_EXTRACT__MODEL_DIR": os.environ.get("MLOPS_EXTRACT__MODEL_DIR", str(REPO / "data/models")),
    })  # fmt: skip
    sys.path.insert(0, str(REPO))
    from mlops.config import load_settings
    from mlops.io.metadata import MetadataStore
    from mlops.io.objects import open_object_store
    from mlops.pipeline import run_all
    from tests.unit.hostile_corpus import build

    settings = load_settings()
    corpus = build()
    store = open_object_store(settings)
    for name, hostile in corpus.items():
        store.put_bytes(f"{settings.prefixes.landing}/{name}", hostile.data)
    records = data_dir / "worker-records"
    records.mkdir()
    from benchmarks.hostile_figures import timed as worker_timed  # by a name a forkserver worker can import

    for stage, (module_name, function) in WORKER_FUNCTIONS.items():
        module = importlib.import_module(module_name)
        original = getattr(module, function)
        where = (original.__module__, original.__name__)
        setattr(module, function, functools.partial(worker_timed, stage, where, str(records)))

    started = time.perf_counter()
    summary = run_all("hostile_figures", settings)
    wall = time.perf_counter() - started
    documents = {row["sha256"]: row for row in MetadataStore(settings.metadata_url).documents()}
    lines = [json.loads(line) for path in records.glob("*.jsonl") for line in path.read_text().splitlines()]

    slowest: dict[str, dict[str, Any]] = {}
    for line in lines:
        if line["seconds"] > slowest.get(line["stage"], {}).get("seconds", -1):
            slowest[line["stage"]] = line
    peaks: dict[tuple[str, int], dict[str, float]] = defaultdict(lambda: {"rss_mb": 0.0, "documents": 0})
    for line in lines:
        peak = peaks[(line["stage"], line["pid"])]
        peak["rss_mb"] = max(peak["rss_mb"], line["rss_mb"])
        peak["documents"] += 1
    return {
        "files": len(corpus),
        "pipeline_seconds": round(wall, 1),
        "status": summary["status"],
        "documents": summary["documents"],
        "by_outcome": dict(Counter(doc["quarantine_reason"] or doc["status"] for doc in documents.values())),
        "slowest_file": {
            stage: {"file": documents[line["sha256"]]["original_filename"], "seconds": round(line["seconds"], 2)}
            for stage, line in slowest.items()
        },
        "stage_seconds": summary["stage_seconds"],
        "workers": [
            {"stage": stage, "pid": pid, **{key: round(value, 1) for key, value in peak.items()}}
            for (stage, pid), peak in sorted(peaks.items())
        ],
    }


def render(result: dict[str, Any]) -> str:
    lines = [f"{result['files']} hostile files, pipeline {result['pipeline_seconds']} s, verdict {result['status']}",
             f"outcomes: {result['by_outcome']}", "", "slowest file per stage (seconds in the worker):"]  # fmt: skip
    lines += [f"  {stage:22} {row['seconds']:7.2f}  {row['file']}" for stage, row in result["slowest_file"].items()]
    lines += ["", "peak RSS per worker process (MB):"]
    lines += [f"  {row['stage']:22} pid {row['pid']:>7}  {row['rss_mb']:7.1f}  ({row['documents']:.0f} documents)"
              for row in result["workers"]]  # fmt: skip
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="mlops-hostile-"))
    os.chdir(REPO)
    try:
        result = run(args.workers, data_dir)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(render(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
