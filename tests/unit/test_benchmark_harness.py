"""benchmarks/run_benchmark.py: the plain-Tesseract reference runs with the platform's own OCR
settings, and the benchmark's runs ignore the caller's MLOPS_* environment."""

import importlib.util
import sys
from pathlib import Path

from mlops.extraction.ocr import DEFAULT_PSM

REPO = Path(__file__).resolve().parents[2]


def _harness():
    spec = importlib.util.spec_from_file_location("run_benchmark", REPO / "benchmarks" / "run_benchmark.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("run_benchmark", module)
    spec.loader.exec_module(module)
    return module


def test_reference_command_uses_the_platform_psm_and_ocr_dpi(tmp_path, monkeypatch):
    harness = _harness()
    monkeypatch.setenv("MLOPS_EXTRACT__OCR_DPI", "150")  # the caller's: a benchmark run must not see it
    env = harness.base_env(tmp_path / "project", 2, tmp_path / "models")
    assert not any(key == "MLOPS_EXTRACT__OCR_DPI" for key in env)
    assert (tmp_path / "project" / "config" / "pipeline_config.yaml").is_file()
    assert not (tmp_path / "project" / ".env").exists()

    settings = harness.platform_settings(env | {"MLOPS_EXTRACT__OCR_DPI": "200"})
    assert (settings["ocr_dpi"], settings["psm"]) == (200, DEFAULT_PSM)
    command = harness.tesseract_command("tesseract", Path("page.png"), settings["psm"], settings["ocr_dpi"])
    assert command == ["tesseract", "page.png", "-", "--psm", str(DEFAULT_PSM), "--dpi", "200", "tsv"]
