"""The platform's startup check refuses empty, default, weak and reused secrets, by name."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlops import preflight

ROOT = Path(__file__).resolve().parents[2]


def good_env() -> dict[str, str]:
    def secret(seed: str) -> str:
        return (seed * 40)[:24] + "Zq7"

    return {
        "AIRFLOW__CORE__FERNET_KEY": base64.urlsafe_b64encode(bytes(range(32))).decode(),
        "AIRFLOW__API_AUTH__JWT_SECRET": secret("jwt"),
        "AIRFLOW__API__SECRET_KEY": secret("api"),
        "_AIRFLOW_WWW_USER_USERNAME": "admin",
        "_AIRFLOW_WWW_USER_PASSWORD": secret("admin-pw"),
        "POSTGRES_PASSWORD": secret("pg"),
        "AIRFLOW_DB_PASSWORD": secret("afdb"),
        "PLATFORM_DB_PASSWORD": secret("platformdb"),
        "REDIS_PASSWORD": secret("redis"),
        "MINIO_ROOT_USER": "root-3f9a1c",
        "MINIO_ROOT_PASSWORD": secret("minioroot"),
        "MINIO_PIPELINE_ACCESS_KEY": "loan-pipeline-7d2e",
        "MINIO_PIPELINE_SECRET_KEY": secret("pipeline"),
    }


def problems_for(**changes: str | None) -> dict[str, str]:
    env = good_env()
    for name, value in changes.items():
        if value is None:
            env.pop(name)
        else:
            env[name] = value
    return {problem.name: problem.message for problem in preflight.check(env)}


def test_a_good_environment_passes(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    assert preflight.check(good_env()) == []
    for name, value in good_env().items():
        monkeypatch.setenv(name, value)
    assert preflight.main([]) == 0
    assert "checked" in capsys.readouterr().out


@pytest.mark.parametrize("variable", [variable.name for variable in preflight.VARIABLES])
@pytest.mark.parametrize("value", [None, "", "   ", "CHANGE_ME", "change-me-please", "<your secret>"])
def test_every_variable_is_refused_when_empty_or_a_placeholder(variable: str, value: str | None):
    problems = problems_for(**{variable: value})
    assert list(problems) == [variable]
    assert "scripts/make-secrets.sh" in problems[variable]


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("_AIRFLOW_WWW_USER_PASSWORD", "airflow"),
        ("_AIRFLOW_WWW_USER_PASSWORD", "admin"),
        ("POSTGRES_PASSWORD", "postgres"),
        ("AIRFLOW_DB_PASSWORD", "airflow"),
        ("PLATFORM_DB_PASSWORD", "password"),
        ("MINIO_ROOT_USER", "minioadmin"),
        ("MINIO_ROOT_PASSWORD", "minioadmin"),
        ("MINIO_PIPELINE_ACCESS_KEY", "minioadmin"),
        ("MINIO_PIPELINE_SECRET_KEY", "minioadmin"),
        ("AIRFLOW__API_AUTH__JWT_SECRET", "secret"),
        ("AIRFLOW__CORE__FERNET_KEY", "46BKJoQYlPPOexq0OhDZnIlNepKFf87WFwLbfzqDDho="),
    ],
)
def test_known_defaults_are_refused(variable: str, value: str):
    problems = problems_for(**{variable: value})
    assert list(problems) == [variable]
    assert "default" in problems[variable] or "published" in problems[variable]


@pytest.mark.parametrize("variable", [v.name for v in preflight.VARIABLES if v.kind == "secret"])
def test_short_secrets_are_refused(variable: str):
    problems = problems_for(**{variable: "Short1secretX"})
    assert list(problems) == [variable]
    assert "shorter than 16" in problems[variable]


@pytest.mark.parametrize(
    "value", ["not-a-fernet-key-but-long-enough", base64.urlsafe_b64encode(b"x" * 16).decode()]
)
def test_a_fernet_key_must_be_a_fernet_key(value: str):
    problems = problems_for(AIRFLOW__CORE__FERNET_KEY=value)
    assert "not a Fernet key" in problems["AIRFLOW__CORE__FERNET_KEY"]


def test_a_generated_fernet_key_passes():
    from cryptography.fernet import Fernet

    assert problems_for(AIRFLOW__CORE__FERNET_KEY=Fernet.generate_key().decode()) == {}


def test_a_rotation_list_of_fernet_keys_passes_only_if_every_key_is_real():
    from cryptography.fernet import Fernet

    new, old = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    assert problems_for(AIRFLOW__CORE__FERNET_KEY=f"{new},{old}") == {}
    public = "46BKJoQYlPPOexq0OhDZnIlNepKFf87WFwLbfzqDDho="
    assert (
        "published" in problems_for(AIRFLOW__CORE__FERNET_KEY=f"{new},{public}")["AIRFLOW__CORE__FERNET_KEY"]
    )


def test_values_embedded_in_connection_uris_must_be_uri_safe():
    problems = problems_for(PLATFORM_DB_PASSWORD="p@ss:word/with#chars-long")
    assert "break the connection URIs" in problems["PLATFORM_DB_PASSWORD"]
    # The admin password is never embedded in a URI: any character is fine there.
    assert problems_for(_AIRFLOW_WWW_USER_PASSWORD="p@ss:word/with#chars-long") == {}


def test_a_leading_dash_is_refused():
    problems = problems_for(_AIRFLOW_WWW_USER_PASSWORD="-looks-like-an-option-to-the-cli")
    assert "starts with '-'" in problems["_AIRFLOW_WWW_USER_PASSWORD"]


def test_reused_secrets_are_refused_by_name():
    env = good_env()
    problems = problems_for(MINIO_PIPELINE_SECRET_KEY=env["MINIO_ROOT_PASSWORD"])
    assert list(problems) == ["MINIO_PIPELINE_SECRET_KEY"]
    assert "reuses the value of MINIO_ROOT_PASSWORD" in problems["MINIO_PIPELINE_SECRET_KEY"]


def test_the_pipeline_key_is_not_the_root_user():
    problems = problems_for(MINIO_PIPELINE_ACCESS_KEY=good_env()["MINIO_ROOT_USER"])
    assert list(problems) == ["MINIO_PIPELINE_ACCESS_KEY"]


def test_every_problem_is_reported_at_once_with_exit_code_3(tmp_path: Path):
    env_file = tmp_path / ".env"
    env_file.write_text(
        "POSTGRES_PASSWORD=postgres\nMINIO_ROOT_USER=minioadmin\nMINIO_ROOT_PASSWORD=minioadmin\n"
    )
    clean = {key: value for key, value in os.environ.items() if key in ("PATH", "HOME", "LANG")}
    result = subprocess.run(
        [sys.executable, "-m", "mlops.preflight", "--env-file", str(env_file)],
        check=False,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=clean,
    )
    assert result.returncode == preflight.EXIT_CONFIG
    lines = [line.strip() for line in result.stderr.splitlines()[1:]]
    assert [line.split(":", 1)[0] for line in lines] == [v.name for v in preflight.VARIABLES]
    assert all("Fix: run scripts/make-secrets.sh" in line for line in lines)
    assert "minioadmin" not in result.stderr, "values are never printed"


def test_the_process_environment_is_checked_by_default(monkeypatch: pytest.MonkeyPatch, capsys):
    for name, value in good_env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AIRFLOW__CORE__FERNET_KEY", "")
    assert preflight.main([]) == preflight.EXIT_CONFIG
    err = capsys.readouterr().err
    assert "AIRFLOW__CORE__FERNET_KEY: is empty" in err
    assert "POSTGRES_PASSWORD" not in err


def test_a_missing_env_file_is_a_configuration_error(tmp_path: Path, capsys):
    assert preflight.main(["--env-file", str(tmp_path / "nope.env")]) == preflight.EXIT_CONFIG
    assert "make-secrets.sh" in capsys.readouterr().err
