"""Settings: precedence env > .env > params overlay > pipeline YAML > defaults, and clear errors."""

import pytest

from mlops.config import load_settings
from mlops.errors import ConfigError


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """An empty project directory: no .env, no config file, no MLOPS_* variables."""
    monkeypatch.chdir(tmp_path)
    for name in [name for name in __import__("os").environ if name.startswith("MLOPS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("MLOPS_PROJECT_DIR", str(tmp_path))
    (tmp_path / "config").mkdir()
    return tmp_path


def test_defaults_are_the_embedded_backends(workdir):
    settings = load_settings()
    assert settings.object_store.backend == "local"
    assert settings.local_root == workdir / "data"
    assert settings.metadata_url == f"sqlite:///{workdir}/data/metadata.db"
    assert settings.limits.max_file_bytes == 50 * 1024 * 1024


def test_precedence_env_over_dotenv_over_params_over_yaml(workdir, monkeypatch):
    (workdir / "config" / "pipeline_config.yaml").write_text(
        "limits:\n  max_pages: 11\n  timeout_seconds: 5\n  worker_memory_mb: 700\n  max_image_pixels: 1000\n"
    )
    (workdir / "params.yaml").write_text("limits:\n  max_pages: 22\n  timeout_seconds: 6\n  worker_memory_mb: 800\n")
    (workdir / ".env").write_text("MLOPS_LIMITS__MAX_PAGES=33\nMLOPS_LIMITS__TIMEOUT_SECONDS=7\n")
    monkeypatch.setenv("MLOPS_PARAMS_FILE", "params.yaml")
    monkeypatch.setenv("MLOPS_LIMITS__MAX_PAGES", "44")
    limits = load_settings().limits
    assert limits.max_pages == 44  # environment
    assert limits.timeout_seconds == 7  # .env
    assert limits.worker_memory_mb == 800  # params overlay
    assert limits.max_image_pixels == 1000  # pipeline YAML


def test_invalid_value_names_the_key_and_the_fix(workdir, monkeypatch):
    monkeypatch.setenv("MLOPS_LIMITS__MAX_FILE_BYTES", "lots")
    with pytest.raises(ConfigError) as error:
        load_settings()
    message = str(error.value)
    assert "limits.max_file_bytes" in message
    assert "MLOPS_LIMITS__MAX_FILE_BYTES" in message
    assert "'lots'" in message


def test_invalid_yaml_value_and_unknown_key_are_reported(workdir):
    (workdir / "config" / "pipeline_config.yaml").write_text(
        "object_store:\n  backend: ftp\nlimts:\n  max_pages: 3\n"
    )
    with pytest.raises(ConfigError) as error:
        load_settings()
    message = str(error.value)
    assert "object_store.backend" in message and "'ftp'" in message
    assert "limts" in message


def test_missing_params_overlay_is_a_config_error(workdir, monkeypatch):
    monkeypatch.setenv("MLOPS_PARAMS_FILE", "nope.yaml")
    with pytest.raises(ConfigError, match="MLOPS_PARAMS_FILE"):
        load_settings()


def test_fingerprint_changes_with_settings_but_ignores_secrets(workdir, monkeypatch):
    base = load_settings().fingerprint()
    monkeypatch.setenv("MLOPS_OBJECT_STORE__SECRET_ACCESS_KEY", "a-new-secret-value")
    assert load_settings().fingerprint() == base
    monkeypatch.setenv("MLOPS_LIMITS__MAX_PAGES", "9")
    assert load_settings().fingerprint() != base


def test_dotenv_shared_with_compose_keeps_other_services_keys_out(workdir):
    (workdir / ".env").write_text("POSTGRES_PASSWORD=something-long-enough\nMLOPS_WORKERS=1\n")
    assert load_settings().workers == 1
    (workdir / ".env").write_text("MLOPS_WORKRS=1\n")
    with pytest.raises(ConfigError, match="MLOPS_WORKRS: unknown setting"):
        load_settings()


def test_a_mistyped_environment_variable_is_rejected_naming_the_key_it_meant(workdir, monkeypatch):
    monkeypatch.setenv("MLOPS_LIMTS__MAX_PAGES", "3")
    monkeypatch.setenv("MLOPS_WORKERS", "not-a-number")
    with pytest.raises(ConfigError) as error:
        load_settings()
    message = str(error.value)
    assert "MLOPS_LIMTS__MAX_PAGES: unknown setting in the environment. Fix: did you mean MLOPS_LIMITS__MAX_PAGES?" in message
    assert "workers:" in message  # the other problem is reported beside it
    monkeypatch.delenv("MLOPS_WORKERS")
    monkeypatch.setenv("MLOPS_LIMITS__MAX_PAGES", "3")
    monkeypatch.delenv("MLOPS_LIMTS__MAX_PAGES")
    assert load_settings().limits.max_pages == 3


def test_gate_fail_run_on_defaults_to_failed_and_rejects_other_values(workdir, monkeypatch):
    assert load_settings().gate.fail_run_on == "failed"
    monkeypatch.setenv("MLOPS_GATE__FAIL_RUN_ON", "sometimes")
    with pytest.raises(ConfigError, match="gate.fail_run_on"):
        load_settings()


def _yaml_leaves(tree: dict, prefix: str = "") -> dict[str, object]:
    leaves: dict[str, object] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            leaves |= _yaml_leaves(value, f"{prefix}{key}.")
        else:
            leaves[f"{prefix}{key}"] = value
    return leaves


def test_env_example_documents_every_pipeline_config_key_with_the_same_value():
    """.env.example and config/pipeline_config.yaml describe one configuration: each key of the
    YAML file is in .env.example as MLOPS_<SECTION>__<KEY>, with the same value."""
    import re
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parents[2]
    documented = dict(re.findall(r"^# (MLOPS_[A-Z0-9_]+)=(.*)$", (root / ".env.example").read_text(), re.MULTILINE))
    config = yaml.safe_load((root / "config" / "pipeline_config.yaml").read_text())
    for dotted, value in _yaml_leaves(config).items():
        name = "MLOPS_" + dotted.replace(".", "__").upper()
        assert name in documented, f"{dotted} is in pipeline_config.yaml but {name} is not in .env.example"
        assert str(yaml.safe_load(documented[name])) == str(value), f"{name}: {documented[name]} vs {value}"


def test_relative_paths_and_the_config_file_come_from_the_project_whatever_the_working_directory(
    workdir, monkeypatch, tmp_path_factory
):
    (workdir / "config" / "pipeline_config.yaml").write_text("limits:\n  max_pages: 7\n")
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))

    settings = load_settings()

    assert settings.limits.max_pages == 7
    assert settings.data_dir == workdir / "data"
    assert settings.quality.suite_file == workdir / "config" / "expectations" / "extractions.json"
    monkeypatch.setenv("MLOPS_CONFIG_FILE", "no/such/config.yaml")
    with pytest.raises(ConfigError, match="MLOPS_CONFIG_FILE='no/such/config.yaml': no such file"):
        load_settings()


def test_a_database_url_in_an_error_never_shows_its_password(workdir, monkeypatch):
    monkeypatch.setenv("MLOPS_METADATA__URL", "postgres://mlops:hunter2-secret@db:5432/mlops")
    with pytest.raises(ConfigError) as error:
        load_settings()
    assert "hunter2-secret" not in str(error.value)
    assert "'postgres://mlops:***@db:5432/mlops'" in str(error.value)
