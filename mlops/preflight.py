"""Startup check of the production stack: refuse to start on an empty, default or weak secret.

The official Airflow compose file ships an empty Fernet key (connection passwords stored in
plain text), ``airflow``/``airflow`` and MinIO's ``minioadmin``/``minioadmin``. Copying those
defaults is the most common way such a stack ends up exposed, so ``airflow-init`` runs this check
before anything else and the stack does not come up until every secret is set::

    python -m mlops.preflight                  # checks the process environment (as in airflow-init)
    python -m mlops.preflight --env-file .env  # checks a .env file before `docker compose up`

Exit status 0 when every secret is acceptable; 3 (a configuration error, as in the CLI) with one
line per problem, each naming the variable and the fix, otherwise. Values are never printed.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

EXIT_OK = 0
EXIT_CONFIG = 3
MIN_SECRET_LENGTH = 16
FIX = "run scripts/make-secrets.sh to write a fresh .env"

Kind = Literal["fernet", "secret", "name"]


@dataclass(frozen=True)
class Variable:
    """One variable the stack needs; ``uri_safe`` when it is embedded in a connection URI/JSON."""

    name: str
    kind: Kind
    what: str
    uri_safe: bool = False
    defaults: frozenset[str] = frozenset()  # for names: the published defaults of this one


VARIABLES: tuple[Variable, ...] = (
    Variable(
        "AIRFLOW__CORE__FERNET_KEY", "fernet", "the key that encrypts connection passwords in Airflow's DB"
    ),
    Variable(
        "AIRFLOW__API_AUTH__JWT_SECRET", "secret", "the JWT signing secret shared by every Airflow component"
    ),
    Variable("AIRFLOW__API__SECRET_KEY", "secret", "the api-server session/log-fetch secret"),
    Variable("_AIRFLOW_WWW_USER_USERNAME", "name", "the Airflow admin user name"),
    Variable("_AIRFLOW_WWW_USER_PASSWORD", "secret", "the Airflow admin password"),
    Variable("POSTGRES_PASSWORD", "secret", "the Postgres superuser password", uri_safe=True),
    Variable("AIRFLOW_DB_PASSWORD", "secret", "the password of Airflow's database user", uri_safe=True),
    Variable("PLATFORM_DB_PASSWORD", "secret", "the password of the platform's database user", uri_safe=True),
    Variable("REDIS_PASSWORD", "secret", "the Celery broker (Redis) password", uri_safe=True),
    Variable(
        "MINIO_ROOT_USER",
        "name",
        "the MinIO root user",
        defaults=frozenset({"minioadmin", "minio", "admin", "root"}),
    ),
    Variable("MINIO_ROOT_PASSWORD", "secret", "the MinIO root password", uri_safe=True),
    Variable(
        "MINIO_PIPELINE_ACCESS_KEY",
        "name",
        "the pipeline's least-privilege MinIO access key",
        uri_safe=True,
        defaults=frozenset({"minioadmin", "minio", "admin", "root"}),
    ),
    Variable("MINIO_PIPELINE_SECRET_KEY", "secret", "the pipeline's MinIO secret key", uri_safe=True),
)

# Values that ship in public examples, tutorials and images: as good as no secret at all.
KNOWN_DEFAULTS = frozenset(
    {
        "airflow", "admin", "administrator", "minioadmin", "minio", "password", "passw0rd", "postgres",
        "redis", "secret", "secret_key", "changeit", "changeme", "root", "guest", "test", "example",
        "default", "mlops", "user", "123456", "12345678", "qwerty", "letmein", "temporary_key",
    }
)  # fmt: skip
PUBLIC_FERNET_KEYS = frozenset(
    {
        # puckel/docker-airflow and the many tutorials that copied it
        "46BKJoQYlPPOexq0OhDZnIlNepKFf87WFwLbfzqDDho=",
        "81HqDtbqAywKSOumSha3BhWNOdQ26slT6K0YaZeZyPs=",
        # 32 zero bytes, 32 ASCII "0"s and similar placeholders
        base64.urlsafe_b64encode(b"\0" * 32).decode(),
        base64.urlsafe_b64encode(b"0" * 32).decode(),
        base64.urlsafe_b64encode(b"a" * 32).decode(),
    }
)
_PLACEHOLDER = re.compile(
    r"^(change[-_ ]?me|changeit|replace[-_ ]?me|todo|xxx+|your[-_ ].*|<.*>|\$\{.*\})", re.IGNORECASE
)
_URI_SAFE = re.compile(r"^[A-Za-z0-9._~-]+$")


@dataclass(frozen=True)
class Problem:
    name: str
    message: str

    def __str__(self) -> str:
        return f"{self.name}: {self.message}"


def _is_placeholder(variable: Variable, value: str) -> bool:
    value = value.strip()
    if _PLACEHOLDER.match(value):
        return True
    known = variable.defaults if variable.kind == "name" else KNOWN_DEFAULTS
    return value.lower() in known


def _fernet_problem(value: str) -> str | None:
    if value in PUBLIC_FERNET_KEYS:
        return "is a Fernet key published in examples, so anyone can decrypt the connection passwords"
    try:
        raw = base64.urlsafe_b64decode(value.encode())
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        return "is not a Fernet key (32 url-safe base64-encoded bytes)"
    if len(set(raw)) < 8:
        return "is a Fernet key with almost no entropy"
    return None


def _problem(variable: Variable, value: str | None) -> str | None:
    if value is None or not value.strip():
        return f"is empty or unset; it must hold {variable.what}"
    if _is_placeholder(variable, value):
        return f"is a known default or placeholder; it must hold {variable.what}"
    if variable.kind == "fernet":
        # "new,old" during a key rotation: every key of the list must be a real one.
        problems = [_fernet_problem(key.strip()) for key in value.split(",")]
        return next((problem for problem in problems if problem), None)
    if variable.kind == "secret" and len(value) < MIN_SECRET_LENGTH:
        return f"is shorter than {MIN_SECRET_LENGTH} characters; it must hold {variable.what}"
    if variable.kind == "name" and len(value) < 3:
        return f"is shorter than 3 characters; it must hold {variable.what}"
    if value.startswith("-"):
        return "starts with '-', which the command-line tools that receive it read as an option"
    if variable.uri_safe and not _URI_SAFE.match(value):
        return (
            "contains characters that break the connection URIs/JSON it is embedded in; "
            "use only letters, digits and - _ . ~"
        )
    return None


def check(env: Mapping[str, str | None], variables: Sequence[Variable] = VARIABLES) -> list[Problem]:
    """Every problem with the secrets in ``env``, in the order of ``variables``."""
    problems: list[Problem] = []
    first_holder: dict[str, str] = {}
    for variable in variables:
        value = env.get(variable.name)
        message = _problem(variable, value)
        if message is None and variable.kind != "name":
            assert value is not None
            if value in first_holder:
                message = f"reuses the value of {first_holder[value]}; every secret must be different"
            first_holder.setdefault(value, variable.name)
        if (
            message is None
            and variable.name == "MINIO_PIPELINE_ACCESS_KEY"
            and value == env.get("MINIO_ROOT_USER")
        ):
            message = "equals MINIO_ROOT_USER; the pipeline must use its own least-privilege key"
        if message is not None:
            problems.append(
                Problem(variable.name, f"{message}. Fix: {FIX}, or set {variable.name} yourself.")
            )
    return problems


def read_env_file(path: Path) -> dict[str, str | None]:
    """The variables of a .env file, as docker compose reads them (no interpolation)."""
    from dotenv import dotenv_values

    return dict(dotenv_values(path, interpolate=False))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mlops.preflight",
        description="Refuse to start the platform while a secret is empty, a known default or weak.",
    )
    parser.add_argument(
        "--env-file", type=Path, help="check this .env file instead of the process environment"
    )
    args = parser.parse_args(argv)
    if args.env_file is not None:
        if not args.env_file.is_file():
            print(f"preflight: {args.env_file}: no such file. Fix: {FIX}.", file=sys.stderr)
            return EXIT_CONFIG
        env: Mapping[str, str | None] = read_env_file(args.env_file)
    else:
        env = os.environ
    problems = check(env)
    if problems:
        print(f"preflight: refusing to start, {len(problems)} problem(s) with the secrets:", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_CONFIG
    print(f"preflight: {len(VARIABLES)} secrets and names checked: none empty, default, weak or reused")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
