"""The three runners agree: stage names are identical in dvc.yaml, the Airflow DAG and
``mlops.stages.STAGE_NAMES`` (the CLI's choices), and each DVC stage declares what it runs.

The DAG file is read with ``ast`` (its ``STAGE_DOCS`` keys and the ids given to
``_stage_task``), so this test needs neither Airflow nor an AIRFLOW_HOME.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from mlops.config import Settings
from mlops.stages import STAGE_NAMES

ROOT = Path(__file__).resolve().parents[2]
DVC_YAML = ROOT / "dvc.yaml"
PARAMS_YAML = ROOT / "params.yaml"
DAG_FILE = ROOT / "dags" / "document_processing_pipeline.py"
RUN_DIR = "data/runs/${run_id}"


TRAINING_STAGE = "train_extractor"


@pytest.fixture(scope="module")
def dvc_stages() -> dict[str, dict]:
    """The pipeline's stages in dvc.yaml (the training stage is DVC and CLI only: see below)."""
    stages = yaml.safe_load(DVC_YAML.read_text())["stages"]
    stages.pop(TRAINING_STAGE)
    return stages


def test_training_stage_builds_the_model_extract_data_loads():
    stages = yaml.safe_load(DVC_YAML.read_text())["stages"]
    training = stages[TRAINING_STAGE]
    assert training["cmd"].endswith("train-extractor")
    assert training["outs"] == ["data/models/${extract.model_version}/extractor.joblib"]
    assert training["outs"][0] in stages["extract_data"]["deps"]
    needed = import_closure("mlops.extraction.training") | {"mlops/__main__.py", "mlops/cli.py"}
    missing = sorted(path for path in needed if not _covered(path, training["deps"]))
    assert not missing, f"dvc.yaml stage {TRAINING_STAGE}: add {missing} to its deps"
    assert {"config/field_lexicon.yaml", "config/servicers.yaml"} <= set(training["deps"])


@pytest.fixture(scope="module")
def params() -> dict:
    return yaml.safe_load(PARAMS_YAML.read_text())


def _dag_stage_names() -> tuple[list[str], list[str]]:
    """(STAGE_DOCS keys in order, task ids passed to _stage_task) from the DAG file's syntax tree."""
    tree = ast.parse(DAG_FILE.read_text())
    docs: list[str] = []
    task_ids: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "STAGE_DOCS" for t in node.targets):
            docs = [key.value for key in node.value.keys]
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "id", None) == "_stage_task"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            task_ids.append(node.args[0].value)
    return docs, task_ids


def _leaves(tree: dict, prefix: str = "") -> dict[str, object]:
    flat: dict[str, object] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_leaves(value, f"{dotted}."))
        else:
            flat[dotted] = value
    return flat


def _is_setting(dotted: str) -> bool:
    model: type[BaseModel] = Settings
    *sections, leaf = dotted.split(".")
    for section in sections:
        field = model.model_fields.get(section)
        if field is None or not (
            isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
        ):
            return False
        model = field.annotation
    return leaf in model.model_fields


def _module_path(name: str) -> Path | None:
    base = ROOT.joinpath(*name.split("."))
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    return None


def _mlops_imports(path: Path, package: str) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == "mlops")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module.split(".")[0] == "mlops":
                found.add(module)
                found.update(
                    f"{module}.{alias.name}" for alias in node.names if _module_path(f"{module}.{alias.name}")
                )
    return found


def import_closure(module: str) -> set[str]:
    """Repository paths of every mlops module that importing ``module`` can load (parents included)."""
    paths: dict[str, Path] = {}
    todo = [module]
    while todo:
        name = todo.pop()
        parts = name.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)) if ".".join(parts[:i]) not in paths)
        if name in paths or (path := _module_path(name)) is None:
            continue
        paths[name] = path
        todo.extend(_mlops_imports(path, name if path.name == "__init__.py" else ".".join(parts[:-1])))
    return {path.relative_to(ROOT).as_posix() for path in paths.values()}


def _covered(path: str, deps: list[str]) -> bool:
    return any(path == dep or path.startswith(dep.rstrip("/") + "/") for dep in deps)


def test_stage_names_are_identical_in_dvc_dag_and_cli(dvc_stages):
    docs, task_ids = _dag_stage_names()
    assert tuple(dvc_stages) == STAGE_NAMES
    assert tuple(docs) == STAGE_NAMES
    assert sorted(task_ids) == sorted(STAGE_NAMES)


def test_each_dvc_stage_runs_its_own_stage_through_the_cli(dvc_stages):
    for name, stage in dvc_stages.items():
        assert stage["cmd"] == f"python -m mlops --params params.yaml stage {name} --run-id ${{run_id}}", name
        assert f"{RUN_DIR}/{name}" in stage["outs"], name


def test_run_id_is_a_template_variable_not_a_param():
    document = yaml.safe_load(DVC_YAML.read_text())
    assert {"run_id": "dvc"} in document["vars"]


def test_upstream_deps_are_outputs_of_earlier_stages(dvc_stages):
    for position, (name, stage) in enumerate(dvc_stages.items()):
        for dep in stage["deps"]:
            if dep.startswith(f"{RUN_DIR}/"):
                upstream = dep.removeprefix(f"{RUN_DIR}/")
                assert upstream in STAGE_NAMES[:position], f"{name} depends on {dep}, not an earlier stage"
    assert "data/landing" in dvc_stages["acquire_documents"]["deps"]


def test_deps_cover_the_code_each_stage_imports(dvc_stages):
    for name, stage in dvc_stages.items():
        deps = stage["deps"]
        assert f"mlops/stages/{name}.py" in deps, name
        for dep in deps:
            if not dep.startswith("data/"):  # code and config; data/ exists once a corpus is generated
                assert (ROOT / dep).exists(), f"{name}: dependency {dep} does not exist"
        # the `stage` command's path through the CLI: __main__, cli, errors, then the stage module
        runner = {"mlops/__main__.py", "mlops/cli.py"} | import_closure("mlops.errors")
        needed = import_closure(f"mlops.stages.{name}") | runner
        missing = sorted(path for path in needed if not _covered(path, deps))
        assert not missing, f"dvc.yaml stage {name}: add {missing} to its deps (the stage imports them)"


def test_config_files_are_deps_of_the_stages_that_read_them(dvc_stages):
    assert "config/expectations/extractions.json" in dvc_stages["validate_extraction"]["deps"]
    assert "config/anomaly_rules.yaml" in dvc_stages["detect_anomalies"]["deps"]
    assert "data/landing/labels.jsonl" in dvc_stages["check_bias"]["deps"]
    for name, stage in dvc_stages.items():
        assert "config/pipeline_config.yaml" in stage["deps"], name


def test_params_yaml_is_a_valid_settings_overlay(params):
    settings = Settings(_env_file=None, **params)  # init values beat env/.env: the file alone is checked
    for dotted, value in _leaves(params).items():
        current: object = settings
        for part in dotted.split("."):
            current = getattr(current, part)
        assert current == value, dotted


def test_stage_params_exist_in_settings_and_params_yaml(dvc_stages, params):
    declared = _leaves(params)
    listed: set[str] = set()
    training = yaml.safe_load(DVC_YAML.read_text())["stages"][TRAINING_STAGE]
    for name, stage in [*dvc_stages.items(), (TRAINING_STAGE, training)]:
        for key in stage.get("params", []):
            assert isinstance(key, str), f"{name}: list params of params.yaml as plain dotted keys"
            assert _is_setting(key), f"{name}: param {key} is not a Settings key"
            assert key in declared, f"{name}: param {key} is missing from params.yaml"
            listed.add(key)
    unused = sorted(set(declared) - listed)
    assert not unused, f"params.yaml keys no stage lists (editing them would rerun nothing): {unused}"


def test_extract_params_are_not_read_upstream(dvc_stages):
    for name in ("acquire_documents", "validate_documents", "preprocess_documents"):
        assert not any(re.match(r"extract\.", key) for key in dvc_stages[name].get("params", [])), name
    assert "extract.ocr_dpi" in dvc_stages["extract_data"]["params"]


def test_reports_are_metrics_and_outs(dvc_stages):
    reports = dvc_stages["generate_reports"]
    assert {"data/reports/${run_id}/run_summary.json": {"cache": False}} in reports["metrics"]
    assert "data/reports/${run_id}/report.html" in reports["outs"]
