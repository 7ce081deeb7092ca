"""Static checks of the production stack: docker-compose.yml, Dockerfile, .env.example, secrets.

No Docker engine is needed: the compose file is interpolated and inspected here, and validated by
Debian's `docker-compose config` (compose-spec schema included) when that program is installed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlops import preflight

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
MAKE_SECRETS = ROOT / "scripts" / "make-secrets.sh"
AIRFLOW_IMAGE_TAG = "apache/airflow:3.3.2-python3.11"
AIRFLOW_SERVICES = (
    "airflow-init",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
)
BACKING_SERVICES = ("postgres", "redis", "minio", "minio-init")
ONE_SHOT_JOBS = ("airflow-init", "minio-init")

_REFERENCE = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


class MissingVariable(Exception):
    pass


def _interpolate_text(text: str, env: dict[str, str]) -> str:
    """Compose's variable substitution: ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?err}, $$."""

    def substitute(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["braced"] or match["bare"]
        op, arg, value = match["op"], match["arg"] or "", env.get(name)
        if op == ":-":
            return value if value else arg
        if op == "-":
            return arg if value is None else value
        if op in (":?", "?") and (value is None or (op == ":?" and not value)):
            raise MissingVariable(f"{name}: {arg}")
        return value or ""

    return _REFERENCE.sub(substitute, text)


def _interpolate(node: Any, env: dict[str, str]) -> Any:
    if isinstance(node, str):
        return _interpolate_text(node, env)
    if isinstance(node, list):
        return [_interpolate(item, env) for item in node]
    if isinstance(node, dict):
        return {key: _interpolate(value, env) for key, value in node.items()}
    return node


def _strings(node: Any):
    if isinstance(node, str):
        yield node
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item)
    elif isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)


def _env_of(service: dict[str, Any]) -> dict[str, str]:
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        return dict(item.split("=", 1) for item in environment)
    return {key: "" if value is None else str(value) for key, value in environment.items()}


def _documented_names(text: str) -> set[str]:
    return set(re.findall(r"^#?\s*([A-Za-z_][A-Za-z0-9_]*)=", text, flags=re.MULTILINE))


@pytest.fixture(scope="module")
def raw_compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def secrets_env_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("stack") / ".env"
    subprocess.run(["bash", str(MAKE_SECRETS), str(out)], check=True, capture_output=True, text=True)
    return out


@pytest.fixture(scope="module")
def secrets_env(secrets_env_file: Path) -> dict[str, str]:
    return {key: value or "" for key, value in preflight.read_env_file(secrets_env_file).items()}


@pytest.fixture(scope="module")
def compose(raw_compose: dict[str, Any], secrets_env: dict[str, str]) -> dict[str, Any]:
    """The compose model as `docker compose` sees it with a freshly generated .env."""
    return _interpolate(raw_compose, secrets_env)


def _docker_compose_config(env_file: Path) -> subprocess.CompletedProcess[str]:
    clean_env = {key: value for key, value in os.environ.items() if key in ("PATH", "HOME", "LANG")}
    return subprocess.run(
        [
            "docker-compose",
            "--project-directory",
            str(ROOT),
            "--env-file",
            str(env_file),
            "-f",
            str(COMPOSE_FILE),
            "config",
        ],
        check=False,
        capture_output=True,
        text=True,
        env=clean_env,
        timeout=120,
    )


needs_docker_compose = pytest.mark.skipif(
    shutil.which("docker-compose") is None,
    reason="Debian's docker-compose is not installed (apt-get install docker-compose)",
)


# -- the file parses and validates ---------------------------------------------------------


@needs_docker_compose
def test_docker_compose_config_accepts_the_stack_with_generated_secrets(secrets_env_file: Path):
    result = _docker_compose_config(secrets_env_file)
    assert result.returncode == 0, result.stderr
    rendered = yaml.safe_load(result.stdout)
    assert set(AIRFLOW_SERVICES + BACKING_SERVICES) <= set(rendered["services"])


@needs_docker_compose
def test_docker_compose_refuses_the_stack_with_env_example_as_is(tmp_path: Path):
    env_file = tmp_path / ".env"
    shutil.copy(ENV_EXAMPLE, env_file)
    result = _docker_compose_config(env_file)
    assert result.returncode != 0
    assert "run scripts/make-secrets.sh" in result.stderr


def test_every_secret_is_mandatory_where_compose_uses_it(raw_compose: dict[str, Any]):
    secret_names = {variable.name for variable in preflight.VARIABLES}
    for text in _strings(raw_compose):
        for match in _REFERENCE.finditer(text):
            name = match["braced"] or match["bare"]
            if name in secret_names and name != "_AIRFLOW_WWW_USER_USERNAME":
                assert match["op"] == ":?", (
                    f"{name} must be used as ${{{name}:?...}} so compose refuses it empty"
                )


def test_every_variable_the_compose_file_uses_is_documented_in_env_example(raw_compose: dict[str, Any]):
    used = set()
    for text in _strings(raw_compose):
        used |= {
            match["braced"] or match["bare"] for match in _REFERENCE.finditer(text) if not match["escaped"]
        }
    undocumented = used - _documented_names(ENV_EXAMPLE.read_text())
    assert not undocumented, f"add these to .env.example with a comment: {sorted(undocumented)}"


def test_connections_are_valid_json_pointing_at_the_stack(compose: dict[str, Any]):
    env = _env_of(compose["services"]["airflow-worker"])
    minio = json.loads(env["AIRFLOW_CONN_MINIO_DEFAULT"])
    assert minio["conn_type"] == "aws"
    assert minio["extra"]["endpoint_url"] == "http://minio:9000"
    assert minio["login"] == compose["services"]["minio-init"]["environment"]["MINIO_PIPELINE_ACCESS_KEY"]
    metadata = json.loads(env["AIRFLOW_CONN_MLOPS_METADATA"])
    assert (metadata["conn_type"], metadata["host"], metadata["schema"], metadata["login"]) == (
        "postgres",
        "postgres",
        "mlops",
        "mlops",
    )
    assert env["MLOPS_OBJECT_STORE__BACKEND"] == "s3"
    assert env["MLOPS_OBJECT_STORE__AIRFLOW_CONN_ID"] == "minio_default"
    assert env["MLOPS_METADATA__AIRFLOW_CONN_ID"] == "mlops_metadata"
    assert env["AIRFLOW__LOGGING__REMOTE_LOGGING"] == "True"
    assert env["AIRFLOW__LOGGING__REMOTE_BASE_LOG_FOLDER"].startswith("s3://airflow-logs/")
    assert env["AIRFLOW__LOGGING__REMOTE_LOG_CONN_ID"] == "minio_default"


def test_platform_config_paths_are_absolute_inside_the_image(compose: dict[str, Any]):
    for name in AIRFLOW_SERVICES:
        service = compose["services"][name]
        env = _env_of(service)
        assert service["working_dir"] == "/opt/airflow/project"
        for key in ("MLOPS_CONFIG_FILE", "MLOPS_QUALITY__SUITE_FILE", "MLOPS_ANOMALIES__RULES_FILE"):
            assert env[key].startswith("/opt/airflow/project/config/"), (name, key)
            assert (ROOT / env[key].removeprefix("/opt/airflow/project/")).is_file(), (name, key)


# -- services, health and order ----------------------------------------------------------------


def test_every_long_running_service_has_a_healthcheck(compose: dict[str, Any]):
    for name, service in compose["services"].items():
        if name in ONE_SHOT_JOBS:
            continue
        healthcheck = service.get("healthcheck")
        assert healthcheck and healthcheck.get("test") and not healthcheck.get("disable"), (
            f"{name} has no healthcheck"
        )


def test_one_shot_jobs_do_not_restart_and_are_awaited_to_completion(compose: dict[str, Any]):
    services = compose["services"]
    for job in ONE_SHOT_JOBS:
        assert services[job]["restart"] == "no"
        waiting = [name for name, service in services.items() if job in (service.get("depends_on") or {})]
        assert waiting, f"nothing waits for {job}"
        for name in waiting:
            assert services[name]["depends_on"][job]["condition"] == "service_completed_successfully", name


def test_every_dependency_waits_on_a_condition(compose: dict[str, Any]):
    for name, service in compose["services"].items():
        depends_on = service.get("depends_on") or {}
        assert isinstance(depends_on, dict), f"{name}: depends_on needs conditions, not a list"
        for dependency, spec in depends_on.items():
            assert dependency in compose["services"], (name, dependency)
            assert spec.get("condition") in ("service_healthy", "service_completed_successfully"), (
                name,
                dependency,
            )
            if spec["condition"] == "service_healthy":
                assert "healthcheck" in compose["services"][dependency], (name, dependency)


def test_airflow_waits_for_init_and_workers_for_the_api_server(compose: dict[str, Any]):
    services = compose["services"]
    for name in AIRFLOW_SERVICES[1:]:
        assert services[name]["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["airflow-worker"]["depends_on"]["airflow-apiserver"]["condition"] == "service_healthy"
    assert (
        services["airflow-init"]["depends_on"]["minio-init"]["condition"] == "service_completed_successfully"
    )


def test_state_lives_in_named_volumes(compose: dict[str, Any]):
    declared = set(compose["volumes"])
    for name, path in (("postgres", "/var/lib/postgresql/data"), ("minio", "/data"), ("redis", "/data")):
        mounts = [volume.split(":") for volume in compose["services"][name]["volumes"]]
        assert any(source in declared and target == path for source, target, *_ in mounts), name


# -- pinning and exposure ------------------------------------------------------------------------


def test_every_image_is_pinned(compose: dict[str, Any]):
    for name, service in compose["services"].items():
        image = service["image"]
        if "@sha256:" in image:
            continue
        repository, _, tag = image.rpartition(":")
        assert repository and "/" not in tag, f"{name}: {image} has no tag"
        assert tag != "latest" and re.search(r"\d", tag), f"{name}: {image} is not pinned to a version"
        if repository in ("postgres", "redis"):
            assert re.match(r"^\d+\.\d+", tag), f"{name}: pin a minor.patch version, not {tag}"


def test_the_built_image_is_on_the_pinned_official_airflow_image():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.findall(r"^FROM\s+(\S+)", dockerfile, flags=re.MULTILINE) == [AIRFLOW_IMAGE_TAG]
    version = AIRFLOW_IMAGE_TAG.split(":")[1].split("-")[0]
    assert f"apache-airflow=={version}\n" in (ROOT / "requirements.txt").read_text()
    assert re.search(r"apt-get install[^\n]*tesseract-ocr tesseract-ocr-eng", dockerfile)
    assert "pip install --no-cache-dir -r requirements.txt -c constraints.txt" in dockerfile
    users = re.findall(r"^USER\s+(\S+)", dockerfile, flags=re.MULTILINE)
    assert users[0] == "root" and users[-1] == "airflow", "apt as root, then run as airflow"


def test_dockerignore_keeps_secrets_and_local_state_out_of_the_image():
    ignored = (ROOT / ".dockerignore").read_text().split()
    for pattern in (".env", ".git", ".venv", "data/*"):
        assert pattern in ignored
    assert "docker" not in ignored, "the init scripts are part of the image"


def test_only_the_ui_and_the_minio_console_are_published_and_on_loopback(
    raw_compose: dict[str, Any], compose: dict[str, Any]
):
    published = {
        name: service.get("ports", [])
        for name, service in compose["services"].items()
        if service.get("ports")
    }
    assert set(published) == {"airflow-apiserver", "minio"}
    for name, ports in published.items():
        for port in ports:
            parts = str(port).split(":")
            assert len(parts) == 3, f"{name}: {port} has no host IP, so it binds every interface"
            assert parts[0] == "127.0.0.1", f"{name}: {port} is not on loopback"
    for name in published:
        for port in raw_compose["services"][name]["ports"]:
            assert re.match(r"^\$\{[A-Z_]+_BIND:-127\.0\.0\.1\}:", port), (
                f"{name}: {port} must default to 127.0.0.1"
            )


def test_worker_scales(compose: dict[str, Any]):
    worker = compose["services"]["airflow-worker"]
    assert "container_name" not in worker
    assert "ports" not in worker
    assert worker["command"] == ["celery", "worker"]


# -- Airflow configuration ----------------------------------------------------------------------


def test_every_airflow_service_shares_executor_execution_api_and_secrets(compose: dict[str, Any]):
    shared = {}
    for name in AIRFLOW_SERVICES:
        service = compose["services"][name]
        env = _env_of(service)
        assert service["image"] == compose["services"]["airflow-worker"]["image"]
        assert service["user"].endswith(":0") and service["user"].split(":")[0] == "50000"
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/", (
            name
        )
        assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False", name
        assert env["AIRFLOW__CORE__AUTH_MANAGER"].endswith("FabAuthManager"), name
        assert env.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "False") == "False", name
        for key in (
            "AIRFLOW__CORE__FERNET_KEY",
            "AIRFLOW__API_AUTH__JWT_SECRET",
            "AIRFLOW__API__SECRET_KEY",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
            "AIRFLOW__CELERY__BROKER_URL",
        ):
            assert env[key], (name, key)
            assert shared.setdefault(key, env[key]) == env[key], f"{name}: {key} differs between services"
    assert "@postgres:5432/airflow" in shared["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]


def test_airflow_init_runs_the_preflight_before_anything_else(compose: dict[str, Any]):
    service = compose["services"]["airflow-init"]
    script = (ROOT / "docker" / "airflow-init.sh").read_text()
    assert service["command"][-1] == "/opt/airflow/project/docker/airflow-init.sh"
    commands = [
        line.strip() for line in script.splitlines() if line.strip() and not line.lstrip().startswith("#")
    ]
    first_work = next(line for line in commands if not line.startswith(("set ", "cd ", "echo ")))
    assert first_work == "python -m mlops.preflight"
    env = _env_of(service)
    missing = [variable.name for variable in preflight.VARIABLES if variable.name not in env]
    assert not missing, f"airflow-init cannot check what it does not see: {missing}"
    assert preflight.check(env) == []


def test_init_scripts_are_valid_shell():
    for script, shell in (("airflow-init.sh", "bash"), ("postgres-init.sh", "bash"), ("minio-init.sh", "sh")):
        subprocess.run([shell, "-n", str(ROOT / "docker" / script)], check=True)
    minio_init = (ROOT / "docker" / "minio-init.sh").read_text()
    for bucket in ("loan-documents", "airflow-logs"):
        assert f"arn:aws:s3:::{bucket}/*" in minio_init
    assert '"s3:*"' not in minio_init and "consoleAdmin" not in minio_init and "readwrite " not in minio_init


# -- secrets -------------------------------------------------------------------------------------


def test_env_example_holds_no_usable_secret():
    env = preflight.read_env_file(ENV_EXAMPLE)
    documented = _documented_names(ENV_EXAMPLE.read_text())
    reported = {problem.name for problem in preflight.check(env)}
    for variable in preflight.VARIABLES:
        assert variable.name in documented, f"{variable.name} is not documented in .env.example"
        assert variable.name in reported, f"{variable.name} in .env.example would be accepted as it is"
    # Uncommented placeholders must be refused too, not just missing values.
    uncommented = {name: "CHANGE_ME" for name in documented}
    assert {problem.name for problem in preflight.check(uncommented)} == {v.name for v in preflight.VARIABLES}


def test_make_secrets_writes_an_env_that_passes_the_preflight(
    secrets_env_file: Path, capsys: pytest.CaptureFixture[str]
):
    assert preflight.main(["--env-file", str(secrets_env_file)]) == preflight.EXIT_OK
    assert stat.S_IMODE(secrets_env_file.stat().st_mode) == 0o600
    env = preflight.read_env_file(secrets_env_file)
    assert "MLOPS_BATCH_SIZE" not in env, "the platform's commented settings stay commented"
    assert _documented_names(ENV_EXAMPLE.read_text()) <= _documented_names(secrets_env_file.read_text())


def test_make_secrets_never_overwrites_silently_and_never_repeats(tmp_path: Path):
    out = tmp_path / ".env"
    subprocess.run(["bash", str(MAKE_SECRETS), str(out)], check=True, capture_output=True)
    first = out.read_text()
    refused = subprocess.run(
        ["bash", str(MAKE_SECRETS), str(out)], check=False, capture_output=True, text=True
    )
    assert refused.returncode != 0 and "--force" in refused.stderr
    assert out.read_text() == first
    subprocess.run(["bash", str(MAKE_SECRETS), "--force", str(out)], check=True, capture_output=True)
    assert (tmp_path / ".env.bak").read_text() == first
    old, new = preflight.read_env_file(tmp_path / ".env.bak"), preflight.read_env_file(out)
    for variable in preflight.VARIABLES:
        if variable.kind != "name":
            assert old[variable.name] != new[variable.name], variable.name
