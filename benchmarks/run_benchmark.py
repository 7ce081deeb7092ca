"""End-to-end benchmark: synthetic corpus -> all nine stages, in-process, in a fresh data directory.

    .venv/bin/python benchmarks/run_benchmark.py --count 200 --seed 7 --workers 2

Measures corpus generation time, seconds per stage, extraction throughput (documents and pages
per minute, text-layer PDFs and scans separately), peak memory of the process tree, field
accuracy text layer vs OCR, and the machine it ran on; writes one JSON file and prints a table.
It is a measurement, not a test: it never fails on a slow number. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
MiB = 1024 * 1024
# text_source values of an extraction, and how the report names them.
SOURCE_LABELS = {"text_layer": "text PDFs", "ocr": "scans (OCR)", "mixed": "mixed", "external": "external"}


# ---------------------------------------------------------------- memory sampling


class TreeSampler(threading.Thread):
    """Samples the RSS of this process plus all its descendants (forkserver, pool workers,
    tesseract) every ``interval`` seconds; keeps the peak overall and per stage label."""

    def __init__(self, interval: float = 0.25) -> None:
        super().__init__(name="rss-sampler", daemon=True)
        import psutil

        self._psutil = psutil
        self.interval = interval
        self.root = psutil.Process()
        self.stage = "startup"
        self.peak_total = 0
        self.peak_main = 0
        self.peak_processes = 0
        self.peak_by_stage: dict[str, int] = {}
        self.max_load1 = 0.0
        self.samples = 0
        self._halt = threading.Event()

    def sample(self) -> None:
        psutil = self._psutil
        try:
            main = self.root.memory_info().rss
            children = self.root.children(recursive=True)
        except psutil.Error:
            return
        total = main
        for child in children:
            try:
                total += child.memory_info().rss
            except psutil.Error:  # exited between listing and reading
                continue
        self.samples += 1
        self.peak_total = max(self.peak_total, total)
        self.peak_main = max(self.peak_main, main)
        self.peak_processes = max(self.peak_processes, 1 + len(children))
        self.peak_by_stage[self.stage] = max(self.peak_by_stage.get(self.stage, 0), total)
        self.max_load1 = max(self.max_load1, os.getloadavg()[0])

    def run(self) -> None:
        while not self._halt.is_set():
            self.sample()
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join()
        self.sample()


# ---------------------------------------------------------------- machine facts


def _first_line(command: list[str]) -> str | None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (done.stdout or done.stderr).strip()
    return text.splitlines()[0].strip() if text else None


def machine_info(tesseract_cmd: str | None) -> dict[str, Any]:
    import psutil

    cpu_model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    commit = _first_line(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    dirty = _first_line(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"])
    return {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "cpu_model": cpu_model,
        "logical_cores": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "memory_total_mb": round(psutil.virtual_memory().total / MiB),
        "python": platform.python_version(),
        "tesseract": _first_line([tesseract_cmd or "tesseract", "--version"]),
        "git_commit": commit,
        "git_dirty": bool(dirty),
    }


# ---------------------------------------------------------------- throughput


def _label_kinds(labels: list[dict]) -> dict[str, str]:
    """sha256 -> render kind (text_pdf, image_pdf, png, jpeg, tiff) from labels.jsonl."""
    kinds: dict[str, str] = {}
    for row in labels:
        if row.get("expected_quarantine_reason") or not row.get("format"):
            continue
        if row["format"] == "pdf":
            kinds[row["sha256"]] = "text_pdf" if row.get("has_text_layer") else "image_pdf"
        else:
            kinds[row["sha256"]] = row["format"]
    return kinds


def _rates(docs: int, pages: int, seconds: float) -> dict[str, float | None]:
    if seconds <= 0:
        return {"docs_per_min": None, "pages_per_min": None}
    return {"docs_per_min": round(docs * 60 / seconds, 1), "pages_per_min": round(pages * 60 / seconds, 1)}


def throughput(extractions: Any, extract_wall: float, workers: int, kinds: dict[str, str]) -> dict[str, Any]:
    """Per text source: single-worker rates from the per-document seconds measured inside the
    workers, and W-worker rates from the extract stage's wall clock, apportioned to each source
    by its share of the per-document seconds."""
    total_cpu = float(extractions["seconds"].sum())
    by_source: dict[str, Any] = {}
    for source, group in extractions.groupby("text_source"):
        docs, pages, cpu = len(group), int(group["pages"].sum()), float(group["seconds"].sum())
        wall_share = extract_wall * cpu / total_cpu if total_cpu else 0.0
        by_source[str(source)] = {
            "label": SOURCE_LABELS.get(str(source), str(source)),
            "documents": docs,
            "pages": pages,
            "text_layer_pages": int(group["text_layer_pages"].sum()),
            "ocr_pages": int(group["ocr_pages"].sum()),
            "worker_seconds": round(cpu, 2),
            "seconds_per_document": round(cpu / docs, 3) if docs else None,
            "seconds_per_page": round(cpu / pages, 3) if pages else None,
            "p95_seconds_per_document": round(float(group["seconds"].quantile(0.95)), 3),
            "max_seconds_per_document": round(float(group["seconds"].max()), 3),
            "single_worker": _rates(docs, pages, cpu),
            "apportioned_wall_seconds": round(wall_share, 2),
            f"with_{workers}_workers": _rates(docs, pages, wall_share),
        }
    by_kind: dict[str, Any] = {}
    if kinds:
        frame = extractions.assign(kind=extractions["sha256"].map(kinds).fillna("unknown"))
        for kind, group in frame.groupby("kind"):
            docs, pages, cpu = len(group), int(group["pages"].sum()), float(group["seconds"].sum())
            by_kind[str(kind)] = {
                "documents": docs,
                "pages": pages,
                "worker_seconds": round(cpu, 2),
                "seconds_per_page": round(cpu / pages, 3) if pages else None,
                "single_worker": _rates(docs, pages, cpu),
            }
    docs, pages = len(extractions), int(extractions["pages"].sum())
    return {
        "extract_wall_seconds": round(extract_wall, 2),
        "worker_seconds_total": round(total_cpu, 2),
        "parallel_efficiency": round(total_cpu / (extract_wall * workers), 3) if extract_wall else None,
        "all": {"documents": docs, "pages": pages, f"with_{workers}_workers": _rates(docs, pages, extract_wall),
                "single_worker": _rates(docs, pages, total_cpu)},
        "by_text_source": by_source,
        "by_kind": by_kind,
    }


def accuracy(summary: dict[str, Any]) -> dict[str, Any]:
    extraction = summary.get("extraction") or {}
    table = extraction.get("accuracy") or {}
    sources = sorted({source for by_source in table.values() for source in by_source})
    means = {}
    for source in sources:
        values = [by_source[source] for by_source in table.values() if by_source.get(source) is not None]
        means[source] = round(sum(values) / len(values), 4) if values else None
    return {
        "field_accuracy": extraction.get("field_accuracy"),
        "doc_type_accuracy": extraction.get("doc_type_accuracy"),
        "mean_field_accuracy_by_source": means,
        "by_field": table,
    }


# ---------------------------------------------------------------- the run


def run(args: argparse.Namespace) -> dict[str, Any]:
    import psutil

    data_dir = Path(args.data_dir) if args.data_dir else Path(tempfile.mkdtemp(prefix="mlops-bench-"))
    data_dir.mkdir(parents=True, exist_ok=True)
    if any(data_dir.iterdir()):
        raise SystemExit(f"--data-dir {data_dir} is not empty: the benchmark needs a fresh data directory")
    # Everything in the fresh directory, whatever .env or the environment says; config from the repo.
    os.environ.update({
        "MLOPS_DATA_DIR": str(data_dir),
        "MLOPS_WORKERS": str(args.workers),
        "MLOPS_OBJECT_STORE__BACKEND": "local",
        "MLOPS_OBJECT_STORE__LOCAL_ROOT": str(data_dir),
        "MLOPS_METADATA__URL": f"sqlite:///{data_dir / 'metadata.db'}",
        "MLOPS_CONFIG_FILE": str(REPO / "config/pipeline_config.yaml"),
        "MLOPS_QUALITY__SUITE_FILE": str(REPO / "config/expectations/extractions.json"),
        "MLOPS_ANOMALIES__RULES_FILE": str(REPO / "config/anomaly_rules.yaml"),
        "MLOPS_EXTRACT__MODEL_DIR": os.environ.get("MLOPS_EXTRACT__MODEL_DIR", str(REPO / "data/models")),  # make models
    })
    os.environ.pop("MLOPS_PARAMS_FILE", None)

    import mlops.pipeline
    from mlops.config import load_settings
    from mlops.io.objects import open_target
    from mlops.sample_data import generate_corpus

    settings = load_settings()
    started_at = datetime.now(UTC)
    run_id = args.run_id or started_at.strftime("bench__%Y%m%dT%H%M%SZ")
    result: dict[str, Any] = {
        "benchmark": {
            "count": args.count, "seed": args.seed, "workers": args.workers, "run_id": run_id,
            "started_at": started_at.isoformat(), "data_dir": str(data_dir),
            "batch_size": settings.batch_size, "ocr_dpi": settings.extract.ocr_dpi,
            "timeout_seconds": settings.limits.timeout_seconds,
        },
        "machine": machine_info(settings.extract.tesseract_cmd),
        "load_average": {"start": [round(x, 2) for x in os.getloadavg()]},
    }
    psutil.cpu_percent(interval=None)  # start the system-wide CPU counter
    sampler = TreeSampler(args.sample_interval)
    sampler.start()
    try:
        # 1. corpus, timed on its own
        sampler.stage = "generate_corpus"
        store, prefix = open_target(None, settings)
        written = {"files": 0, "bytes": 0}

        def write(name: str, data: bytes) -> None:
            store.put_bytes(f"{prefix}/{name}", data)
            written["files"] += 1
            written["bytes"] += len(data)

        t0 = time.perf_counter()
        labels = generate_corpus(args.count, args.seed, write, max_file_bytes=settings.limits.max_file_bytes)
        corpus_seconds = time.perf_counter() - t0
        result["corpus"] = {
            "seconds": round(corpus_seconds, 2),
            "files": written["files"] - 1,  # minus labels.jsonl
            "megabytes": round(written["bytes"] / MiB, 1),
            "good_documents": args.count,
            "bad_inputs": sum(1 for row in labels if row.get("expected_quarantine_reason")),
        }
        logging.getLogger("bench").info("corpus: %d files in %.1f s", written["files"], corpus_seconds)

        # 2. the pipeline, through run_all; stage boundaries only relabel the memory sampler
        stage_wall: dict[str, float] = {}
        real_run_stage = mlops.pipeline.run_stage

        def timed_run_stage(name: str, *a: Any, **kw: Any) -> Any:
            sampler.stage = name
            t = time.perf_counter()
            try:
                return real_run_stage(name, *a, **kw)
            finally:
                stage_wall[name] = round(time.perf_counter() - t, 3)
                sampler.stage = "between stages"

        mlops.pipeline.run_stage = timed_run_stage
        t0 = time.perf_counter()
        error = None
        try:
            summary = mlops.pipeline.run_all(run_id, settings)
        except Exception as exc:  # a stage failed: report it, and measure what did run
            failed_stage = list(stage_wall)[-1] if stage_wall else None
            error = {"stage": failed_stage, "type": type(exc).__name__, "message": str(exc)[:2000]}
            logging.getLogger("bench").exception("the pipeline failed in %s; reporting the stages that ran", failed_stage)
            summary = None
        finally:
            mlops.pipeline.run_stage = real_run_stage
        pipeline_seconds = time.perf_counter() - t0
    finally:
        sampler.stop()
    result["load_average"]["end"] = [round(x, 2) for x in os.getloadavg()]
    result["load_average"]["max_1min_during_run"] = round(sampler.max_load1, 2)
    result["load_average"]["system_cpu_percent_during_run"] = psutil.cpu_percent(interval=None)

    import pandas as pd

    if summary is not None:
        run_id = summary["run_id"]
        extractions_path = data_dir / settings.prefixes.runs / run_id / "store_results" / "extractions.parquet"
        extractions = pd.read_parquet(extractions_path)
    else:
        # No run_summary.json: rebuild the summary from the datasets the finished stages wrote.
        from mlops.run_summary import build_summary
        from mlops.stages import open_context

        ctx = open_context(run_id, settings)
        summary = build_summary(ctx) | {"status": "failed"}
        extractions = ctx.catalog.load_parts("extract_data")
    stage_seconds = summary.get("stage_seconds") or {}
    extract_wall = float(stage_seconds.get("extract_data") or stage_wall.get("extract_data") or 0.0)

    result["pipeline"] = {
        "status": summary.get("status"),
        "error": error,
        "wall_seconds": round(pipeline_seconds, 2),
        "documents_per_minute_end_to_end": round(len(extractions) * 60 / pipeline_seconds, 1),
        "stage_seconds": stage_seconds,
        "stage_wall_seconds": stage_wall,
    }
    result["documents"] = summary.get("documents")
    result["quarantine_reasons"] = summary.get("quarantine_reasons")
    result["extraction"] = {k: (summary.get("extraction") or {}).get(k)
                            for k in ("documents", "text_layer_pages", "ocr_pages")}
    result["throughput"] = throughput(extractions, extract_wall, args.workers, _label_kinds(labels))
    result["memory"] = {
        "peak_tree_rss_mb": round(sampler.peak_total / MiB),
        "peak_main_rss_mb": round(sampler.peak_main / MiB),
        "peak_processes": sampler.peak_processes,
        "peak_tree_rss_mb_by_stage": {stage: round(rss / MiB) for stage, rss in sampler.peak_by_stage.items()},
        "sample_interval_seconds": args.sample_interval,
        "samples": sampler.samples,
        "note": "sum of RSS over the process tree: pages shared between forked processes count once per process",
    }
    result["accuracy"] = accuracy(summary)
    result["validation"] = summary.get("validation") and {
        k: summary["validation"][k] for k in ("score", "status")
    }
    result["benchmark"]["finished_at"] = datetime.now(UTC).isoformat()
    return result


# ---------------------------------------------------------------- the table


def _fmt(value: Any, spec: str = "") -> str:
    if value is None:
        return "-"
    return format(value, spec) if spec else str(value)


def render(result: dict[str, Any]) -> str:
    b, m, w = result["benchmark"], result["machine"], result["benchmark"]["workers"]
    load = result["load_average"]
    lines = [
        (f"benchmark {b['run_id']}: count={b['count']} seed={b['seed']} workers={w} "
        f"(commit {m['git_commit']}{' +dirty' if m['git_dirty'] else ''})"),
        (f"machine: {m['logical_cores']} cores ({m['cpu_model']}), {m['memory_total_mb']} MB, "
        f"Python {m['python']}, {m['tesseract']}"),
        (f"load average: start {load['start']}, end {load['end']}, max 1-min {load['max_1min_during_run']}; "
        f"system CPU during run {load['system_cpu_percent_during_run']}%"),
        "",
        (f"corpus: {result['corpus']['files']} files ({result['corpus']['megabytes']} MB) "
        f"generated in {result['corpus']['seconds']:.1f} s"),
        f"documents: {result['documents']}",
        f"quarantined: {result['quarantine_reasons']}",
        "",
        f"{'stage':<24}{'seconds':>10}",
    ]
    for stage, seconds in result["pipeline"]["stage_seconds"].items():
        lines.append(f"{stage:<24}{seconds:>10.1f}")
    lines.append(f"{'pipeline wall clock':<24}{result['pipeline']['wall_seconds']:>10.1f}")
    if result["pipeline"].get("error"):
        err = result["pipeline"]["error"]
        lines.append(f"PIPELINE FAILED in {err['stage']}: {err['type']}: {err['message'].splitlines()[0]}")
        lines.append("(figures below come from the stages that finished)")
    t = result["throughput"]
    lines += [
        "",
        (f"extraction: {t['all']['documents']} documents, {t['all']['pages']} pages in "
        f"{t['extract_wall_seconds']:.1f} s wall ({t['worker_seconds_total']:.1f} worker-s, "
        f"parallel efficiency {_fmt(t['parallel_efficiency'])})"),
        (f"{'source':<14}{'docs':>6}{'pages':>7}{'s/doc':>8}{'s/page':>8}"
        f"{'docs/min 1w':>13}{'pages/min 1w':>14}{f'docs/min {w}w':>13}{f'pages/min {w}w':>15}"),
    ]
    rows = [(v["label"], v) for v in t["by_text_source"].values()]
    rows.append(("all", {**t["all"], "seconds_per_document": None, "seconds_per_page": None}))
    for label, v in rows:
        one, many = v["single_worker"], v[f"with_{w}_workers"]
        lines.append(
            f"{label:<14}{v['documents']:>6}{v['pages']:>7}{_fmt(v['seconds_per_document'], '.2f'):>8}"
            f"{_fmt(v['seconds_per_page'], '.2f'):>8}{_fmt(one['docs_per_min'], '.1f'):>13}"
            f"{_fmt(one['pages_per_min'], '.1f'):>14}{_fmt(many['docs_per_min'], '.1f'):>13}"
            f"{_fmt(many['pages_per_min'], '.1f'):>15}"
        )
    if t["by_kind"]:
        lines += ["", f"{'file kind':<14}{'docs':>6}{'pages':>7}{'s/page':>8}{'pages/min 1w':>14}"]
        for kind, v in t["by_kind"].items():
            lines.append(f"{kind:<14}{v['documents']:>6}{v['pages']:>7}{_fmt(v['seconds_per_page'], '.2f'):>8}"
                         f"{_fmt(v['single_worker']['pages_per_min'], '.1f'):>14}")
    mem = result["memory"]
    lines += [
        "",
        (f"peak memory: {mem['peak_tree_rss_mb']} MB process tree ({mem['peak_processes']} processes), "
        f"{mem['peak_main_rss_mb']} MB main process"),
        "  by stage: " + ", ".join(f"{s} {mb}" for s, mb in mem["peak_tree_rss_mb_by_stage"].items()),
    ]
    acc = result["accuracy"]
    lines += [
        "",
        f"accuracy: fields {_fmt(acc['field_accuracy'], '.3f')}, doc type {_fmt(acc['doc_type_accuracy'], '.3f')}; "
        "mean by source: " + ", ".join(f"{s} {_fmt(v, '.3f')}" for s, v in acc["mean_field_accuracy_by_source"].items()),
    ]
    sources = list(acc["mean_field_accuracy_by_source"])
    if acc["by_field"]:
        lines.append(f"{'field':<20}" + "".join(f"{s:>12}" for s in sources))
        for field, by_source in acc["by_field"].items():
            lines.append(f"{field:<20}" + "".join(f"{_fmt(by_source.get(s), '.3f'):>12}" for s in sources))
    if result.get("validation"):
        lines.append(f"GX gate: {result['validation']['status']} (score {result['validation']['score']})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200, help="good documents in the corpus (default 200)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="worker processes (default: cores)")
    parser.add_argument("--out", type=Path, help="result JSON (default: benchmarks/results/bench-<UTC time>.json)")
    parser.add_argument("--run-id", help="default: bench__<UTC time>")
    parser.add_argument("--data-dir", help="fresh, empty directory to use (default: a new temp dir)")
    parser.add_argument("--keep-data", action="store_true", help="keep the data directory afterwards")
    parser.add_argument("--sample-interval", type=float, default=0.25, help="RSS sampling period in seconds")
    parser.add_argument("--quiet", action="store_true", help="no per-stage log lines")
    args = parser.parse_args(argv)
    if args.count < 1 or args.workers < 1:
        parser.error("--count and --workers must be at least 1")
    out = (args.out or REPO / "benchmarks/results" / datetime.now(UTC).strftime("bench-%Y%m%dT%H%M%SZ.json"))
    out = out.resolve()
    if args.data_dir:
        args.data_dir = str(Path(args.data_dir).resolve())  # before the chdir below

    os.environ["TQDM_DISABLE"] = "1"  # no progress bars (tqdm reads TQDM_* at call time)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    if not args.quiet:
        for name in ("bench", "mlops.stages", "mlops.progress"):
            logging.getLogger(name).setLevel(logging.INFO)
    os.chdir(REPO)  # the pipeline finds config/ relative to the working directory

    result = run(args)
    if not args.keep_data:
        shutil.rmtree(result["benchmark"]["data_dir"], ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
    print(render(result))
    print(f"\nresult: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
