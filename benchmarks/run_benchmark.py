"""End-to-end benchmark: what a user waits for, per document kind, with plain Tesseract beside it.

    .venv/bin/python benchmarks/run_benchmark.py                 # a few minutes on 2 cores
    .venv/bin/python benchmarks/run_benchmark.py --rss-sizes 1000,10000 --lookup-hashes 1000000

Each scenario is the whole ``python -m mlops run`` in a subprocess, as a user runs it, on a fresh
data directory (local object store + SQLite, the repository's config files, never its .env):
N one-page text PDFs (documents/s), then scanned documents (image PDFs, PNG, JPEG, TIFF) beside
the very same page images through the plain Tesseract CLI in the same sitting (the ratio is the
figure), a rerun with nothing new, peak RSS of the run's process tree at several sizes, and the
optional no-op and near-duplicate lookup benchmarks of benchmarks/noop_rerun.py and
benchmarks/near_duplicates.py. Writes one JSON file, prints a table whose first lines are the
issue's targets. A measurement, never a test: it does not fail on a slow number. See README.md.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BENCH_DIR = Path(__file__).resolve().parent
MiB = 1024 * 1024
SCAN_KINDS = ("image_pdf", "png", "jpeg", "tiff")
VERDICT_EXIT = 5  # the CLI's exit code for a run that completed with a failing verdict
TARGETS = {
    "scan_ratio": 0.9,  # tesseract seconds / run seconds, at least
    "text_docs_per_s": 30.0,  # at least
    "noop_seconds": 5.0,  # below, over 10,000 known documents
    "rss_mb": 1536,  # below, and flat within 20% from 1,000 to 10,000 documents
    "rss_growth": 1.2,
    "lookup_ms": 5.0,  # below, per document at 1,000,000 stored hashes
}


# ---------------------------------------------------------------- memory sampling


class TreeSampler(threading.Thread):
    """Samples the summed RSS of process ``pid`` and all its descendants (pool workers,
    forkserver, tesseract) every ``interval`` seconds; keeps the peak and the highest load."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        super().__init__(name="rss-sampler", daemon=True)
        import psutil

        self._psutil = psutil
        self.interval = interval
        self.root = psutil.Process(pid)
        self.peak_total = 0
        self.peak_processes = 0
        self.max_load1 = 0.0
        self.samples = 0
        self._halt = threading.Event()

    def sample(self) -> None:
        psutil = self._psutil
        try:
            total = self.root.memory_info().rss
            children = self.root.children(recursive=True)
        except psutil.Error:  # the run has exited
            return
        for child in children:
            try:
                total += child.memory_info().rss
            except psutil.Error:  # exited between listing and reading
                continue
        self.samples += 1
        self.peak_total = max(self.peak_total, total)
        self.peak_processes = max(self.peak_processes, 1 + len(children))
        self.max_load1 = max(self.max_load1, os.getloadavg()[0])

    def run(self) -> None:
        while not self._halt.is_set():
            self.sample()
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join()


# ---------------------------------------------------------------- machine facts


def _first_line(command: list[str]) -> str | None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (done.stdout or done.stderr).strip()
    return text.splitlines()[0].strip() if text else None


def machine_info(tesseract_cmd: str) -> dict[str, Any]:
    import psutil

    cpu_model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    dirty = _first_line(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"])
    return {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "cpu_model": cpu_model,
        "logical_cores": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "memory_total_mb": round(psutil.virtual_memory().total / MiB),
        "python": platform.python_version(),
        "tesseract": _first_line([tesseract_cmd, "--version"]),
        "tesserocr": _tesserocr_version(),
        "git_commit": _first_line(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"]),
        "git_dirty": bool(dirty),
    }


def _tesserocr_version() -> str | None:
    """The libtesseract the platform's in-process OCR links (the reference runs the CLI's)."""
    try:
        import tesserocr
    except ImportError:
        return None
    return f"tesserocr {tesserocr.__version__} (libtesseract {tesserocr.tesseract_version().split()[1]})"


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# ---------------------------------------------------------------- corpora


def write_corpus(landing: Path, kind: str, count: int, seed: int) -> list[dict]:
    """``count`` distinct documents into ``landing`` plus labels.jsonl, as mlops.sample_data
    draws them (families, document types and scan kinds balanced), without duplicates, bad input
    or anomalies: ``kind`` "text" gives one-page text PDFs, "scans" image PDFs, PNG, JPEG and
    TIFF scans of the generator's page counts, resolutions and qualities. The first documents of
    a larger corpus are those of a smaller one with the same seed."""
    import hashlib

    from mlops.document_families import FAMILIES, MIN_PAGES, make_document, page_count, render
    from mlops.models import DOCUMENT_TYPES
    from mlops.sample_rendering import KIND_EXTENSIONS

    families = [f for f in FAMILIES if f not in MIN_PAGES] if kind == "text" else list(FAMILIES)
    landing.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(count):
        rng = random.Random(f"{seed}:{kind}:{i}")
        render_kind = "text_pdf" if kind == "text" else SCAN_KINDS[i % len(SCAN_KINDS)]
        pages = 1 if kind == "text" else page_count(render_kind, rng)
        family, doc_type = families[i % len(families)], DOCUMENT_TYPES[i % len(DOCUMENT_TYPES)]
        document = make_document(family, doc_type, f"{seed}:{kind}:content:{i}", pages)
        data, row = render(document, render_kind, rng)
        filename = f"{kind}-{i + 1:05d}{KIND_EXTENSIONS[render_kind]}"
        (landing / filename).write_bytes(data)
        rows.append({**row, "filename": filename, "sha256": hashlib.sha256(data).hexdigest(), "size_bytes": len(data)})
    (landing / "labels.jsonl").write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
    return rows


# ---------------------------------------------------------------- the CLI run


def base_env(project_dir: Path, workers: int, model_dir: Path) -> dict[str, str]:
    """The environment of every run: no MLOPS_* variable from the caller, and a project directory
    whose config/ is the repository's but which has no .env (so the repo's .env is never read)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLOPS_")}
    project_dir.mkdir(parents=True, exist_ok=True)
    if not (project_dir / "config").exists():
        (project_dir / "config").symlink_to(REPO / "config")
    return env | {
        "MLOPS_PROJECT_DIR": str(project_dir),
        "MLOPS_WORKERS": str(workers),
        "MLOPS_OBJECT_STORE__BACKEND": "local",
        "MLOPS_EXTRACT__MODEL_DIR": str(model_dir),
        "MLOPS_GATE__FAIL_RUN_ON": "never",  # a FAILED verdict is a result here, not an error
        "TQDM_DISABLE": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }


def data_env(env: dict[str, str], data_dir: Path) -> dict[str, str]:
    return env | {
        "MLOPS_DATA_DIR": str(data_dir),
        "MLOPS_OBJECT_STORE__LOCAL_ROOT": str(data_dir),
        "MLOPS_METADATA__URL": f"sqlite:///{data_dir / 'metadata.db'}",
    }


def run_cli(env: dict[str, str], data_dir: Path, run_id: str, interval: float) -> dict[str, Any]:
    """``python -m mlops run`` timed from launch to exit, with its process tree's peak RSS and
    its run_summary.json; its output goes to <data_dir>/<run_id>.log."""
    log_path = data_dir / f"{run_id}.log"
    load_before = _load()
    with log_path.open("wb") as log:
        started = time.perf_counter()
        process = subprocess.Popen([sys.executable, "-m", "mlops", "run", "--run-id", run_id],
                                   cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        sampler = TreeSampler(process.pid, interval)
        sampler.start()
        code = process.wait()
        seconds = time.perf_counter() - started
        sampler.stop()
    summary_file = data_dir / "reports" / run_id / "run_summary.json"
    summary = json.loads(summary_file.read_text()) if summary_file.is_file() else {}
    extraction = summary.get("extraction") or {}
    ok = code in (0, VERDICT_EXIT) and bool(summary)
    return {
        "run_id": run_id,
        "exit_code": code,
        "ok": ok,
        "seconds": round(seconds, 2),
        "peak_tree_rss_mb": round(sampler.peak_total / MiB),
        "peak_processes": sampler.peak_processes,
        "rss_samples": sampler.samples,
        "load_before": load_before,
        "max_load_during": round(sampler.max_load1, 2),
        "status": summary.get("status"),
        "documents": summary.get("documents"),
        "extraction": {k: extraction.get(k) for k in ("documents", "text_layer_pages", "ocr_pages")},
        "stage_seconds": summary.get("stage_seconds"),
        "accuracy": accuracy(summary),
        "log": None if ok else str(log_path),
        "log_tail": None if ok else log_path.read_text(errors="replace")[-2000:],
    }


def accuracy(summary: dict[str, Any]) -> dict[str, Any]:
    extraction = summary.get("extraction") or {}
    table = extraction.get("accuracy") or {}
    return {
        "field_accuracy": extraction.get("field_accuracy"),
        "doc_type_accuracy": extraction.get("doc_type_accuracy"),
        "by_field": {field: by_source.get("all") for field, by_source in table.items()},
    }


def text_scenario(env: dict, scratch: Path, count: int, args: argparse.Namespace) -> dict[str, Any]:
    """N one-page text PDFs: the run, then a rerun with nothing new on the same data directory."""
    data_dir = scratch / f"text-{count}"
    t0 = time.perf_counter()
    write_corpus(data_dir / "landing", "text", count, args.seed)
    corpus_seconds = time.perf_counter() - t0
    env = data_env(env, data_dir)
    result = run_cli(env, data_dir, f"bench-text-{count}", args.sample_interval)
    extracted = result["extraction"]["documents"] or 0
    result |= {
        "corpus_documents": count,
        "corpus_seconds": round(corpus_seconds, 2),
        "documents_per_second": round(extracted / result["seconds"], 2) if result["ok"] else None,
        "noop_rerun": run_cli(env, data_dir, f"bench-noop-{count}", args.sample_interval) if result["ok"] else None,
    }
    return result


# ---------------------------------------------------------------- scans and the Tesseract reference


def reference_pages(landing: Path, rows: list[dict], ocr_dpi: int, out: Path) -> list[tuple[Path, int]]:
    """Every scanned page as the platform OCRs it (grayscale, upright, PDF pages rendered and
    image pages downscaled to at most ``ocr_dpi``, never upsampled), written as PNG, with the DPI
    the platform tells Tesseract: min(ocr_dpi, the scan's own resolution)."""

    from mlops.documents import iter_pages, sniff_format

    out.mkdir(parents=True, exist_ok=True)
    pages: list[tuple[Path, int]] = []
    for row in rows:
        data = (landing / row["filename"]).read_bytes()
        images = [(page.image, page.source_dpi) for page in iter_pages(data, sniff_format(data), ocr_dpi)]
        for index, (image, source) in enumerate(images):
            dpi = round(min(ocr_dpi, source)) if source else ocr_dpi
            path = out / f"{Path(row['filename']).stem}-p{index + 1}.png"
            image.save(path, dpi=(dpi, dpi), compress_level=1)
            pages.append((path, dpi))
    return pages


def tesseract_command(cmd: str, image: Path, psm: int, dpi: int) -> list[str]:
    """Plain Tesseract on one page image, TSV (words with boxes and confidences) to stdout."""
    return [cmd, str(image), "-", "--psm", str(psm), "--dpi", str(dpi), "tsv"]


def tesseract_reference(pages: list[tuple[Path, int]], cmd: str, psm: int, workers: int) -> dict[str, Any]:
    """The page images through ``workers`` concurrent single-threaded Tesseract processes."""
    env = os.environ | {"OMP_THREAD_LIMIT": "1"}

    def one(page: tuple[Path, int]) -> int:
        done = subprocess.run(tesseract_command(cmd, page[0], psm, page[1]), env=env, capture_output=True, check=False)
        return done.returncode

    load_before = _load()
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        codes = list(pool.map(one, pages))
    seconds = time.perf_counter() - started
    return {
        "pages": len(pages),
        "processes": workers,
        "seconds": round(seconds, 2),
        "pages_per_minute": round(len(pages) * 60 / seconds, 1) if seconds else None,
        "failed_pages": sum(1 for code in codes if code != 0),
        "command": " ".join(tesseract_command(cmd, Path("<page.png>"), psm, 0)).replace("--dpi 0", "--dpi <page dpi>"),
        "load_before": load_before,
    }


def scan_scenario(env: dict, scratch: Path, settings: dict, args: argparse.Namespace) -> dict[str, Any]:
    data_dir = scratch / "scans"
    t0 = time.perf_counter()
    rows = write_corpus(data_dir / "landing", "scans", args.scan_count, args.seed)
    corpus_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    pages = reference_pages(data_dir / "landing", rows, settings["ocr_dpi"], scratch / "reference-pages")
    render_seconds = time.perf_counter() - t0
    reference = tesseract_reference(pages, settings["tesseract_cmd"], settings["psm"], args.workers)
    reference["render_seconds_excluded"] = round(render_seconds, 2)
    result = run_cli(data_env(env, data_dir), data_dir, "bench-scans", args.sample_interval)
    by_kind: dict[str, int] = {}
    for row in rows:
        by_kind[row["kind"]] = by_kind.get(row["kind"], 0) + 1
    return result | {
        "corpus_documents": len(rows),
        "corpus_pages": len(pages),
        "corpus_by_kind": by_kind,
        "corpus_seconds": round(corpus_seconds, 2),
        "tesseract": reference,
        "ratio_tesseract_to_run": round(reference["seconds"] / result["seconds"], 3) if result["ok"] else None,
    }


# ---------------------------------------------------------------- the other benchmarks of benchmarks/


def optional_benchmark(module: str, function: str, *call_args: Any) -> dict[str, Any]:
    """``benchmarks/<module>.py``'s ``function(*call_args)``, imported only now; a note when the
    file does not exist, the error when it fails."""
    if not (BENCH_DIR / f"{module}.py").is_file():
        return {"skipped": f"benchmarks/{module}.py does not exist"}
    sys.path.insert(0, str(BENCH_DIR))
    started = time.perf_counter()
    try:
        figures = getattr(importlib.import_module(module), function)(*call_args)
    except Exception as error:  # noqa: BLE001 - a measurement that failed is reported, not raised
        return {"error": f"{type(error).__name__}: {error}"[:2000]}
    finally:
        sys.path.remove(str(BENCH_DIR))
    return {"figures": figures, "seconds": round(time.perf_counter() - started, 2)}


SETUP_WORDS = {"setup", "build", "fill", "seed", "populate", "insert", "generate", "corpus"}


def headline(figures: dict[str, Any] | None, unit: str) -> tuple[str, float] | None:
    """The (key, value) a table shows of another benchmark's dict: the number whose key names
    ``unit`` ("ms" or "seconds"), not a setup figure; the bare unit first, then a per-document
    one, then the first."""
    numbers = [(k, v) for k, v in (figures or {}).items()
               if isinstance(v, int | float) and unit in (words := set(k.split("_"))) and not words & SETUP_WORDS]
    exact = [(k, v) for k, v in numbers if k == unit]
    per = [(k, v) for k, v in numbers if "per" in k.split("_")]
    return (exact or per or numbers or [None])[0]


# ---------------------------------------------------------------- the report


def _f(value: Any, spec: str = "") -> str:
    return "-" if value is None else format(value, spec)


def _times(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.2f}x"


def _incomplete(run: dict[str, Any]) -> str:
    """A warning when the run did not extract every document of its corpus (its figure is then
    not what a user waits for)."""
    extracted = (run.get("extraction") or {}).get("documents") or 0
    if not run["ok"]:
        return " -- RUN FAILED"
    return "" if extracted == run["corpus_documents"] else f" -- ONLY {extracted} EXTRACTED"


def targets(result: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(figure, measured, target, detail) rows: the issue's targets first."""
    scans, texts = result.get("scans") or {}, result.get("text") or []
    main_size = result["benchmark"]["text_count"]
    text = next((t for t in texts if t["corpus_documents"] == main_size), texts[-1] if texts else {})
    rows = []
    if scans:
        ref = scans["tesseract"]
        rows.append(("scans vs plain Tesseract", _times(scans["ratio_tesseract_to_run"]),
                     f">= {TARGETS['scan_ratio']}x",
                     (f"tesseract {ref['seconds']:.1f} s / run {scans['seconds']:.1f} s, "
                     f"{scans['corpus_documents']} docs, {scans['corpus_pages']} pages{_incomplete(scans)}")))
    if text:
        rows.append(("text PDFs end to end", f"{_f(text['documents_per_second'], '.1f')} docs/s",
                     f">= {TARGETS['text_docs_per_s']:.0f} docs/s",
                     f"{text['corpus_documents']} docs in {text['seconds']:.1f} s{_incomplete(text)}"))
    noops = [t for t in texts if t.get("noop_rerun")]
    if noops:
        largest = noops[-1]
        rows.append(("no-op rerun", f"{largest['noop_rerun']['seconds']:.1f} s", f"< {TARGETS['noop_seconds']:.0f} s",
                     f"over {largest['corpus_documents']} known docs (target at 10,000)"))
    if noop := result.get("noop_rerun_benchmark"):
        found = headline(noop.get("figures"), "seconds")
        rows.append(("no-op rerun (noop_rerun.py)", f"{found[1]:.2f} s" if found else "-",
                     f"< {TARGETS['noop_seconds']:.0f} s", f"{found[0]}, {noop['documents']:,} docs" if found
                     else noop.get("skipped") or noop.get("error") or f"no seconds figure in {noop.get('figures')}"))
    if texts:
        peaks = [t["peak_tree_rss_mb"] for t in texts]
        growth = peaks[-1] / peaks[0] if len(peaks) > 1 and peaks[0] else None
        rows.append(("peak RSS, text run", f"{max(peaks)} MB", f"< {TARGETS['rss_mb']} MB",
                     " -> ".join(f"{t['corpus_documents']}: {t['peak_tree_rss_mb']} MB" for t in texts)))
        rows.append(("RSS growth, largest/smallest", _times(growth), f"<= {TARGETS['rss_growth']}x",
                     f"{texts[0]['corpus_documents']} -> {texts[-1]['corpus_documents']} docs (target 1,000 -> 10,000)"))
    lookup = result.get("lookup_benchmark") or {}
    found = headline(lookup.get("figures"), "ms")
    rows.append(("near-dup lookup", f"{found[1]:.2f} ms" if found else "-", f"< {TARGETS['lookup_ms']:.0f} ms/doc",
                 f"{found[0]}, {lookup['stored']:,} stored hashes" if found
                 else lookup.get("skipped") or lookup.get("error") or (lookup and f"no ms figure in {lookup.get('figures')}")
                 or "not run (--lookup-hashes 1000000)"))
    for name, run in (("text", text), ("scans", scans)):
        if run:
            acc = run["accuracy"]
            rows.append((f"field accuracy, {name}", _f(acc["field_accuracy"], ".3f"), "unchanged",
                         f"exact match against labels.jsonl; document type {_f(acc['doc_type_accuracy'], '.3f')}"))
    return rows


def render(result: dict[str, Any]) -> str:
    b, m = result["benchmark"], result["machine"]
    lines = [f"{'figure':<30}{'measured':>22}  {'target':<16}detail"]
    lines += [f"{name:<30}{value:>22}  {target:<16}{detail}" for name, value, target, detail in targets(result)]
    lines += [
        "",
        (f"machine: {m['logical_cores']} cores ({m['cpu_model']}), {m['memory_total_mb']} MB, Python {m['python']}, "
        f"{m['tesseract']} (CLI), {m['tesserocr'] or 'no tesserocr'}, commit {m['git_commit']}{' +dirty' if m['git_dirty'] else ''}"),
        (f"load average: start {result['load_average']['start']}, end {result['load_average']['end']}; "
        f"workers {b['workers']}, ocr_dpi {b['ocr_dpi']}, psm {b['psm']}"),
        "",
        f"{'run':<18}{'docs':>7}{'seconds':>9}{'docs/s':>8}{'peak MB':>9}{'procs':>6}{'max load':>9}  status / stages (s)",
    ]
    runs = [(f"text {t['corpus_documents']}", t) for t in result.get("text") or []]
    runs += [(f"noop {t['corpus_documents']}", t["noop_rerun"]) for t in result.get("text") or [] if t["noop_rerun"]]
    if result.get("scans"):
        runs.append(("scans", result["scans"]))
    for name, r in runs:
        docs = (r.get("extraction") or {}).get("documents")
        stages = ", ".join(f"{s.removesuffix('_documents').removesuffix('_data')} {v:.1f}"
                           for s, v in (r.get("stage_seconds") or {}).items() if v >= 0.5)
        state = r["status"] if r["ok"] else f"ERROR exit {r['exit_code']}, log {r['log']}"
        if quarantined := (r.get("documents") or {}).get("quarantined"):
            state += f" ({quarantined} QUARANTINED)"
        lines.append(f"{name:<18}{_f(docs):>7}{r['seconds']:>9.1f}{_f(docs / r['seconds'] if docs else None, '.2f'):>8}"
                     f"{r['peak_tree_rss_mb']:>9}{r['peak_processes']:>6}{r['max_load_during']:>9}  {state}{': ' if stages else ''}{stages}")
    if scans := result.get("scans"):
        ref = scans["tesseract"]
        lines.append(f"{'tesseract CLI':<18}{ref['pages']:>7}{ref['seconds']:>9.1f}{'':>8}{'':>9}{ref['processes']:>6}"
                     f"{'':>9}  pages (render {ref['render_seconds_excluded']:.1f} s excluded): {ref['command']}")
    return "\n".join(lines)


# ---------------------------------------------------------------- main


def platform_settings(env: dict[str, str]) -> dict[str, Any]:
    """The OCR settings a run uses, read the way the run reads them (same environment)."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        from mlops.config import load_settings
        from mlops.extraction.ocr import DEFAULT_PSM

        settings = load_settings()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return {
        "ocr_dpi": settings.extract.ocr_dpi,
        "tesseract_cmd": settings.extract.tesseract_cmd or shutil.which("tesseract") or "tesseract",
        "model_file": str(settings.extractor_model_file),
        "psm": DEFAULT_PSM,
        "batch_size": settings.batch_size,
    }


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _sizes(text: str) -> list[int]:
    return sorted({int(part) for part in text.split(",") if part.strip()})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--text-count", type=int, default=200, help="one-page text PDFs of the text run (default 200)")
    parser.add_argument("--scan-count", type=int, default=20, help="scanned documents (default 20; 0: no scan run)")
    parser.add_argument("--rss-sizes", type=_sizes, default=[50],
                        help="more text-run sizes for peak RSS and the no-op rerun, e.g. 1000,10000 (default 50)")
    parser.add_argument("--noop-documents", type=int, default=0,
                        help="also call measure_noop(N) of benchmarks/noop_rerun.py, e.g. 10000 (default: not run)")
    parser.add_argument("--lookup-hashes", type=int, default=0,
                        help="call measure_lookup of benchmarks/near_duplicates.py with N stored hashes, e.g. 1000000")
    parser.add_argument("--lookup-queries", type=int, default=1000, help="new documents looked up (default 1000)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="worker processes (default: cores)")
    parser.add_argument("--model-dir", type=Path, default=REPO / "data/models",
                        help="trained extractor models (make models; default data/models)")
    parser.add_argument("--out", type=Path, help="result JSON (default: benchmarks/results/bench-<UTC time>.json)")
    parser.add_argument("--keep-data", action="store_true", help="keep the scratch directory (data dirs, logs)")
    parser.add_argument("--sample-interval", type=float, default=0.2, help="RSS sampling period in seconds")
    args = parser.parse_args(argv)
    if args.text_count < 1 or args.workers < 1 or args.scan_count < 0:
        parser.error("--text-count and --workers must be at least 1, --scan-count at least 0")
    out = (args.out or REPO / "benchmarks/results" / datetime.now(UTC).strftime("bench-%Y%m%dT%H%M%SZ.json")).resolve()

    scratch = Path(tempfile.mkdtemp(prefix="mlops-bench-"))
    env = base_env(scratch / "project", args.workers, args.model_dir.resolve())
    settings = platform_settings(env)
    if not Path(settings["model_file"]).is_file():
        parser.error(f"no trained extractor at {settings['model_file']}: run `make models` or pass --model-dir")
    result: dict[str, Any] = {
        "benchmark": {"text_count": args.text_count, "scan_count": args.scan_count, "rss_sizes": args.rss_sizes,
                      "seed": args.seed, "workers": args.workers, "started_at": datetime.now(UTC).isoformat(),
                      "scratch_dir": str(scratch), **settings},
        "machine": machine_info(settings["tesseract_cmd"]),
        "load_average": {"start": _load()},
    }
    try:
        result["text"] = []
        for count in sorted(set(args.rss_sizes) | {args.text_count}):
            say(f"text run: {count} one-page text PDFs ...")
            result["text"].append(text_scenario(env, scratch, count, args))
        if args.scan_count:
            say(f"scan run: {args.scan_count} scanned documents, then the same pages through tesseract ...")
            result["scans"] = scan_scenario(env, scratch, settings, args)
        if args.noop_documents:
            say(f"noop_rerun.measure_noop({args.noop_documents}) ...")
            result["noop_rerun_benchmark"] = {"documents": args.noop_documents,
                                              **optional_benchmark("noop_rerun", "measure_noop", args.noop_documents)}
        if args.lookup_hashes:
            say(f"near_duplicates.measure_lookup({args.lookup_hashes}, {args.lookup_queries}) ...")
            url = f"sqlite:///{scratch / 'lookup.db'}"
            figures = optional_benchmark("near_duplicates", "measure_lookup", args.lookup_hashes, args.lookup_queries, url)
            result["lookup_benchmark"] = {"stored": args.lookup_hashes, "queries": args.lookup_queries, **figures}
    finally:
        result["load_average"]["end"] = _load()
        result["benchmark"]["finished_at"] = datetime.now(UTC).isoformat()
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
        failed = any(not r["ok"] for r in result.get("text", []) + [result.get("scans") or {"ok": True}])
        if not (args.keep_data or failed):
            shutil.rmtree(scratch, ignore_errors=True)
    print(render(result))
    print(f"\nresult: {out}" + (f"\ndata kept: {scratch}" if args.keep_data or failed else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
