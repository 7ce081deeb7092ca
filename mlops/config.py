"""One Settings object for the whole platform.

Precedence, highest first: environment variables (``MLOPS_`` prefix, ``__`` between nested
keys), the ``.env`` file, an optional params overlay (``MLOPS_PARAMS_FILE``, used by DVC with
``params.yaml``), ``config/pipeline_config.yaml`` (``MLOPS_CONFIG_FILE``), then the defaults below.
Nothing is read at import time: call :func:`get_settings`.
"""

from __future__ import annotations

import difflib
import hashlib
import os
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from mlops.errors import ConfigError, redact

ENV_PREFIX = "MLOPS_"
DEFAULT_CONFIG_FILE = "config/pipeline_config.yaml"
MiB = 1024 * 1024
# Measured on the preprocess path (decode, grey, clarity filters, hashes) under RLIMIT_AS: a worker
# needs about 580 MB of address space for its libraries plus 29-30 bytes per pixel of its page.
WORKER_BASE_MB = 600
WORKER_BYTES_PER_PIXEL = 32


class ObjectStoreSettings(BaseModel):
    """Where document bytes, run datasets and reports live."""

    backend: Literal["local", "s3"] = "local"
    local_root: Path | None = Field(None, description="root of the local backend; default: data_dir")
    bucket: str = "loan-documents"
    endpoint_url: str | None = None
    region: str = "us-east-1"
    access_key_id: SecretStr | None = None
    secret_access_key: SecretStr | None = None
    addressing_style: Literal["path", "virtual", "auto"] = "path"
    max_attempts: int | None = Field(None, ge=1, le=20, description="attempts per S3 call; default: retry.max_attempts")
    airflow_conn_id: str | None = Field(None, description="take S3 credentials from this Airflow connection")

    @model_validator(mode="after")
    def _s3_needs_bucket(self) -> ObjectStoreSettings:
        if self.backend == "s3" and not self.bucket:
            raise ValueError("object_store.bucket must be set when object_store.backend is 's3'")
        return self


class MetadataSettings(BaseModel):
    """The platform's own metadata database (not Airflow's)."""

    url: str | None = Field(None, description="SQLAlchemy URL; default: sqlite file in data_dir")
    airflow_conn_id: str | None = Field(None, description="take the Postgres URL from this Airflow connection")

    @field_validator("url")
    @classmethod
    def _known_dialect(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(("sqlite:", "postgresql:", "postgresql+")):
            raise ValueError("must be a sqlite:/// or postgresql:// SQLAlchemy URL")
        return url


class RetrySettings(BaseModel):
    """One budget for transient infrastructure faults, for both stores: attempts per object-store
    call (botocore standard retries) and per metadata-database call (a dropped connection, a
    restarting server, SQLite busy), with exponential backoff between them. A run that outlives
    it stops with an infrastructure error (exit code 4; Airflow retries the task)."""

    max_attempts: int = Field(6, ge=1, le=20, description="attempts per call, the first one included")
    max_backoff_seconds: float = Field(10.0, gt=0, le=300, description="longest wait between two metadata attempts")


class LeaseSettings(BaseModel):
    """One live run per store: the run holding the lease renews it every ``heartbeat_seconds``;
    a lease not renewed for ``ttl_seconds`` (the process was killed) is taken over by the next
    run, which marks the dead run abandoned. Keep the TTL above Airflow's gap between two tasks."""

    ttl_seconds: float = Field(120.0, ge=1, le=86400, description="a lease not renewed this long is expired")
    heartbeat_seconds: float = Field(15.0, gt=0, le=3600, description="how often a live run renews its lease")
    wait_seconds: float = Field(0.0, ge=0, description="wait this long for another run's live lease; 0: stop at once")

    @model_validator(mode="after")
    def _beats_within_the_ttl(self) -> LeaseSettings:
        if self.heartbeat_seconds * 2 > self.ttl_seconds:
            raise ValueError(
                f"lease.heartbeat_seconds={self.heartbeat_seconds:g} must be at most half of lease.ttl_seconds="
                f"{self.ttl_seconds:g}, or one late heartbeat lets another run take a live run's documents"
            )
        return self


class PrefixSettings(BaseModel):
    """Key prefixes inside the object store."""

    landing: str = "landing"
    raw: str = "raw"
    quarantine: str = "quarantine"
    runs: str = "runs"
    reports: str = "reports"

    @field_validator("*")
    @classmethod
    def _no_slashes_at_ends(cls, prefix: str) -> str:
        prefix = prefix.strip("/")
        if not prefix:
            raise ValueError("a prefix cannot be empty")
        return prefix


class LimitSettings(BaseModel):
    """Limits applied to untrusted input before anything parses it for real."""

    max_file_bytes: int = Field(50 * MiB, gt=0)
    max_pages: int = Field(200, gt=0)
    max_image_pixels: int = Field(
        28_000_000, gt=0, description="decompression-bomb limit per page (decoded, or rendered at the highest DPI)"
    )
    timeout_seconds: float = Field(60.0, gt=0, description="per document, in the worker process")
    worker_memory_mb: int = Field(1536, ge=256, description="address-space cap of a worker process")
    max_render_dpi: int = Field(
        300, ge=36, le=600, description="highest DPI any stage renders a PDF page at; validation sizes pages at it"
    )
    max_document_attempts: int = Field(
        3, ge=1, description="a document in a worker when a run died this many times is quarantined as poison"
    )
    listing_timeout_seconds: float = Field(
        600.0, gt=0, description="the landing listing fails, naming the key it reached, after this long"
    )

    @model_validator(mode="after")
    def _largest_page_fits_in_a_worker(self) -> LimitSettings:
        """A page validation accepts must not exhaust the worker that measures or OCRs it later."""
        needed_mb = WORKER_BASE_MB + self.max_file_bytes // MiB + self.max_image_pixels * WORKER_BYTES_PER_PIXEL // MiB
        if needed_mb > self.worker_memory_mb:
            fitting = (self.worker_memory_mb - WORKER_BASE_MB - self.max_file_bytes // MiB) * MiB // WORKER_BYTES_PER_PIXEL
            raise ValueError(
                f"pages of limits.max_image_pixels={self.max_image_pixels:,} need workers of about {needed_mb} MB, "
                f"more than limits.worker_memory_mb={self.worker_memory_mb}: raise worker_memory_mb to "
                f"{needed_mb} or lower max_image_pixels to {max(fitting, 0):,}"
            )
        return self


class PreprocessSettings(BaseModel):
    render_dpi: int = Field(100, ge=36, le=600, description="DPI at which PDF pages are rendered for metrics")
    text_layer_min_chars: int = Field(40, ge=1)
    near_duplicate_max_distance: int = Field(22, ge=0, le=256, description="256-bit phash Hamming distance")


class ExtractSettings(BaseModel):
    extractor: Literal["builtin", "http"] = "builtin"
    ocr_dpi: int = Field(300, ge=72, le=600, description="scans are rendered/OCRed at most at this DPI")
    tesseract_cmd: str | None = Field(None, description="path of the tesseract binary; default: on PATH")
    http_url: str | None = Field(None, description="external extraction API (extractor: http)")
    http_api_key: SecretStr | None = None
    http_timeout_seconds: float = Field(60.0, gt=0)
    model_dir: Path | None = Field(None, description="trained extractor artifacts; default: <data_dir>/models")
    model_version: str = Field("v1", pattern=r"^[A-Za-z0-9._-]+$", description="artifact version to load")
    date_order: Literal["month_first", "day_first"] = Field(
        "month_first", description="how numeric dates such as 04/05/19 are read (US: month_first)"
    )

    @model_validator(mode="after")
    def _http_needs_url(self) -> ExtractSettings:
        if self.extractor == "http" and not self.http_url:
            raise ValueError("extract.http_url must be set when extract.extractor is 'http'")
        return self


class TrainSettings(BaseModel):
    """The extractor's training corpus and held-out evaluation (train_extractor)."""

    lexicon_file: Path = Field(Path("config/field_lexicon.yaml"), description="label wordings per field")
    servicers_file: Path = Field(Path("config/servicers.yaml"), description="canonical servicer names")
    seed: int = 7
    text_documents: int = Field(16, ge=1, description="text PDFs per layout family, document type and pool")
    scan_documents: int = Field(1, ge=0, description="scans per layout family, document type and pool")
    non_loan_documents: int = Field(12, ge=0, description="non-loan forms per pool (the unknown class)")
    folds: list[list[str]] = Field(
        [["classic"], ["label_list"], ["two_column"], ["boxed_form"], ["table"], ["letter"], ["multi_section"]],
        description="layout families held out together; every family must be in one fold",
    )
    wrong_value_cost: float = Field(
        3.0, gt=0, description="how many right values one wrong value costs: sets the field threshold"
    )
    min_doctype_confidence: float = Field(0.5, ge=0, le=1, description="below it the type is unknown")


class QualitySettings(BaseModel):
    """The extraction gate (validate_extraction). The ``min_*`` keys bound its critical
    expectations: any of them failing makes the run FAILED whatever the score."""

    suite_file: Path = Path("config/expectations/extractions.json")
    passed_threshold: float = Field(0.95, ge=0, le=1)
    warning_threshold: float = Field(0.90, ge=0, le=1)
    min_field_completeness: float = Field(
        0.8, ge=0, le=1, description="per document type, share of its documents that have each field it carries"
    )
    min_mean_confidence: float = Field(0.6, ge=0, le=1, description="mean confidence of the fields extracted")
    min_known_doc_type_share: float = Field(
        0.8, ge=0, le=1, description="share of documents classified as a known loan document type"
    )
    data_docs: bool = Field(
        False,
        description="also build GX's own Data Docs site (its pages load styling from public CDNs); "
        "every run publishes reports/<run_id>/validation.html, which works offline, either way",
    )

    @model_validator(mode="after")
    def _ordered(self) -> QualitySettings:
        if self.warning_threshold > self.passed_threshold:
            raise ValueError("quality.warning_threshold must not exceed quality.passed_threshold")
        return self


class IsolationForestSettings(BaseModel):
    """detect_anomalies' IsolationForest over the numeric fields together, trained on the stored
    extractions of earlier runs: it finds values each plausible alone but not together (a payment
    that does not amortise the principal at the rate over the term)."""

    enabled: bool = True
    min_history_rows: int = Field(200, ge=10, description="fewer complete stored rows: the detector is skipped")
    max_history_rows: int = Field(5000, ge=10, description="train on at most the newest N stored extractions")
    contamination: float = Field(0.01, gt=0, le=0.5, description="share of training rows scored as anomalous")
    n_estimators: int = Field(200, ge=10, le=2000, description="trees in the forest")
    random_state: int = Field(7, description="seed: the same history gives the same model and findings")
    severity: Literal["warning", "critical"] = "warning"


class AnomalySettings(BaseModel):
    rules_file: Path = Path("config/anomaly_rules.yaml")
    isolation_forest: IsolationForestSettings = IsolationForestSettings()


class BiasSettings(BaseModel):
    max_difference: float = Field(0.2, ge=0, le=1)
    min_ratio: float = Field(0.8, ge=0, le=1)
    min_group_size: int = Field(3, ge=1)
    # bias over a window of runs (bias_detection_pipeline DAG, `python -m mlops bias-window`)
    window_runs: int = Field(10, ge=1, description="the window: the last N completed runs")
    window_days: int | None = Field(None, ge=1, description="instead: the completed runs started in the last N days")
    window_min_documents: int = Field(30, ge=2, description="smaller slices: not enough evidence, never flagged")
    bootstrap_samples: int = Field(200, ge=20, le=5000, description="bootstrap resamples for the intervals")
    confidence_level: float = Field(0.95, gt=0.5, lt=1, description="of the bootstrap intervals")
    random_state: int = Field(7, description="seed of the bootstrap: the same window gives the same report")


class GateSettings(BaseModel):
    """When a run's verdict fails its runner: the Airflow run (its quality_gate task) and the exit
    code of ``python -m mlops run``. The report is written first, whatever the verdict."""

    fail_run_on: Literal["failed", "warning", "never"] = Field(
        "failed", description="fail the run when its verdict is this bad or worse; never: only report it"
    )


class AlertSettings(BaseModel):
    """Alerts (mlops/alerts.py): rules and channels live in ``rules_file``; these bound how hard a
    receiver is tried, so one that is down costs a run seconds, not minutes."""

    rules_file: Path = Field(Path("config/alert_rules.yaml"), description="channels, severities and rules")
    enabled: bool = True
    timeout_seconds: float = Field(10.0, gt=0, le=120, description="per request to a receiver")
    attempts: int = Field(3, ge=1, le=10, description="tries per alert and channel")
    backoff_seconds: float = Field(1.0, ge=0, le=60, description="wait before the second try, doubling after")


class MonitoringSettings(BaseModel):
    """Field statistics recorded by store_results for every run, and the drift of a run against a
    baseline window of earlier good runs (``python -m mlops drift``). A drift check fires only when
    the change is both significant (p below ``p_value``: a run of ten documents moves by chance)
    and large (at least its ``min_*`` effect size)."""

    categorical_fields: list[str] = Field(
        ["extractor", "doc_type", "text_source", "servicer"],
        description="string fields whose value frequencies are kept; other strings keep lengths only",
    )
    top_k: int = Field(20, ge=1, le=1000, description="most frequent values kept per categorical field")
    histogram_bins: int = Field(10, ge=2, le=100, description="equal-width bins of numeric histograms")
    baseline_runs: int = Field(5, ge=1, description="the last N good runs before the run make its baseline")
    min_baseline_runs: int = Field(3, ge=1, description="fewer good runs with statistics: NOT ENOUGH HISTORY")
    baseline_verdicts: list[Literal["passed", "warning", "failed"]] = Field(
        ["passed", "warning"], description="verdicts of completed runs that may serve as baseline"
    )
    p_value: float = Field(0.01, gt=0, lt=1, description="significance level of every drift test")
    min_ks_statistic: float = Field(0.2, ge=0, le=1, description="numeric fields: smallest KS distance that counts")
    min_js_distance: float = Field(0.1, ge=0, le=1, description="categorical fields: smallest Jensen-Shannon distance")
    min_missing_rate_increase: float = Field(0.1, ge=0, le=1, description="smallest rise of a field's missing rate")
    min_confidence_drop: float = Field(0.05, ge=0, le=1, description="smallest fall of a field's mean confidence")
    trend_runs: int = Field(10, ge=2, description="data_quality_monitoring: anomaly-rate trend over the last N completed runs")
    alert_window_hours: float = Field(
        24, gt=0, description="data_quality_monitoring: each rule alerts at most once per window of this many hours"
    )


class Settings(BaseSettings):
    """Every setting of the platform. See .env.example and config/pipeline_config.yaml."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="forbid",
        validate_default=True,
    )

    data_dir: Path = Path("data")
    pipeline_version: str = "1"
    workers: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1, le=64)
    batch_size: int = Field(25, ge=1, description="documents per mapped Airflow task")
    landing_ignore: list[str] = Field(
        ["labels.jsonl", ".*", "_*"], description="file-name globs in the landing area that are not documents"
    )
    object_store: ObjectStoreSettings = ObjectStoreSettings()
    metadata: MetadataSettings = MetadataSettings()
    retry: RetrySettings = RetrySettings()
    lease: LeaseSettings = LeaseSettings()
    prefixes: PrefixSettings = PrefixSettings()
    limits: LimitSettings = LimitSettings()
    preprocess: PreprocessSettings = PreprocessSettings()
    extract: ExtractSettings = ExtractSettings()
    train: TrainSettings = TrainSettings()
    quality: QualitySettings = QualitySettings()
    anomalies: AnomalySettings = AnomalySettings()
    bias: BiasSettings = BiasSettings()
    gate: GateSettings = GateSettings()
    alerts: AlertSettings = AlertSettings()
    monitoring: MonitoringSettings = MonitoringSettings()
    labels_key: str | None = Field(
        "landing/labels.jsonl", description="ground-truth labels in the object store, for accuracy metrics"
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Earlier sources win, so the overlay comes before the pipeline config.
        yaml_sources = [YamlConfigSettingsSource(settings_cls, yaml_file=path) for path in reversed(yaml_files())]
        dotenv = _PlatformDotEnv(settings_cls, env_file=project_dir() / ".env")
        return (init_settings, env_settings, dotenv, *yaml_sources, file_secret_settings)

    @model_validator(mode="after")
    def _paths_from_the_project_directory(self) -> Settings:
        """Relative paths point into the project directory whatever the working directory."""
        _anchor_paths(self, project_dir())
        return self

    @model_validator(mode="after")
    def _object_store_shares_the_retry_budget(self) -> Settings:
        if self.object_store.max_attempts is None:
            self.object_store.max_attempts = self.retry.max_attempts
        return self

    @model_validator(mode="after")
    def _renders_within_the_validated_dpi(self) -> Settings:
        for key, dpi in (("preprocess.render_dpi", self.preprocess.render_dpi), ("extract.ocr_dpi", self.extract.ocr_dpi)):
            if dpi > self.limits.max_render_dpi:
                raise ValueError(
                    f"{key}={dpi} is above limits.max_render_dpi={self.limits.max_render_dpi}, the DPI validation "
                    f"sizes pages at: raise limits.max_render_dpi to {dpi} or lower {key}"
                )
        return self

    @property
    def local_root(self) -> Path:
        return self.object_store.local_root or self.data_dir

    @property
    def extractor_model_file(self) -> Path:
        """The trained extractor artifact the pipeline loads (a DVC output of train_extractor)."""
        return (self.extract.model_dir or self.data_dir / "models") / self.extract.model_version / "extractor.joblib"

    @property
    def metadata_url(self) -> str:
        return self.metadata.url or f"sqlite:///{self.data_dir / 'metadata.db'}"

    def fingerprint(self) -> str:
        """A short hash of every non-secret setting, stored with each run to tell configs apart."""
        public = self.model_dump_json(
            exclude={
                "object_store": {"access_key_id", "secret_access_key"},
                "metadata": {"url"},
                "extract": {"http_api_key"},
            }
        )
        return hashlib.sha256(public.encode()).hexdigest()[:16]


class _PlatformDotEnv(DotEnvSettingsSource):
    """.env is shared with Docker Compose: keep the MLOPS_* keys (a misspelt one is still an
    error) and leave the other services' variables (POSTGRES_PASSWORD, ...) alone."""

    def __call__(self) -> dict[str, Any]:
        prefix = ENV_PREFIX.lower()
        return {
            key: value
            for key, value in super().__call__().items()
            if key in self.settings_cls.model_fields or key.startswith(prefix)
        }


def project_dir() -> Path:
    """What relative paths in the settings are relative to: ``MLOPS_PROJECT_DIR``, else the
    checkout this package runs from (it holds config/pipeline_config.yaml), else the working
    directory (an installed package, as in the Docker image)."""
    if configured := os.environ.get(f"{ENV_PREFIX}PROJECT_DIR"):
        return Path(configured)
    checkout = Path(__file__).resolve().parent.parent
    return checkout if (checkout / DEFAULT_CONFIG_FILE).is_file() else Path.cwd()


def _anchor_paths(model: BaseModel, root: Path) -> None:
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, Path) and not value.is_absolute():
            object.__setattr__(model, name, root / value)
        elif isinstance(value, BaseModel):
            _anchor_paths(value, root)


def yaml_files() -> list[Path]:
    """YAML files in rising precedence: the pipeline config, then the optional params overlay.
    ``MLOPS_CONFIG_FILE`` must exist when it is set; the default one is skipped when missing."""
    configured = os.environ.get(f"{ENV_PREFIX}CONFIG_FILE")
    if configured and not Path(configured).is_file():
        raise ConfigError(f"{ENV_PREFIX}CONFIG_FILE={configured!r}: no such file. Point it at an existing YAML file.")
    files = [Path(configured) if configured else project_dir() / DEFAULT_CONFIG_FILE]
    overlay = os.environ.get(f"{ENV_PREFIX}PARAMS_FILE")
    if overlay:
        if not Path(overlay).is_file():
            raise ConfigError(f"{ENV_PREFIX}PARAMS_FILE={overlay!r}: no such file. Point it at an existing YAML file.")
        files.append(Path(overlay))
    return [path for path in files if path.is_file()]


def _explain(error: ValidationError) -> str:
    lines = ["invalid configuration:"]
    for item in error.errors():
        dotted = ".".join(str(part) for part in item["loc"])
        if item["type"] == "extra_forbidden":
            lines.append(
                f"  {dotted.upper() if dotted.startswith(ENV_PREFIX.lower()) else dotted}: unknown setting. "
                "Fix: check its spelling against .env.example and config/pipeline_config.yaml."
            )
            continue
        env_name = ENV_PREFIX + "__".join(str(part).upper() for part in item["loc"])
        given = "" if item["type"] == "missing" else redact(f" (got {item.get('input')!r})")
        lines.append(
            f"  {dotted}: {item['msg']}{given}. Fix: set {env_name} in the environment or .env, "
            f"or `{dotted}` in {DEFAULT_CONFIG_FILE}; every key is documented in .env.example."
        )
    return "\n".join(lines)


def load_settings(**overrides: Any) -> Settings:
    """Build Settings from all sources; raise ConfigError naming each bad key and its fix."""
    problems = unknown_environment_settings(os.environ)
    try:
        settings = Settings(**overrides)
    except ValidationError as error:
        problems = [_explain(error), *problems]
    if problems:
        if not problems[0].startswith("invalid configuration:"):
            problems.insert(0, "invalid configuration:")
        raise ConfigError("\n".join(problems))
    return settings


# MLOPS_* variables that are not settings: where the settings come from, the compose stack's
# project directory, and the test suite's own (MLOPS_TEST_*).
NOT_SETTINGS = ("CONFIG_FILE", "PARAMS_FILE", "PROJECT_DIR", "TEST_")


def setting_env_names(model: type[BaseModel] | None = None, prefix: str = ENV_PREFIX) -> set[str]:
    """Every environment variable name a setting is read from (MLOPS_WORKERS, MLOPS_LIMITS__MAX_PAGES, ...)."""
    names: set[str] = set()
    for name, field in (model or Settings).model_fields.items():
        env_name = f"{prefix}{name.upper()}"
        names.add(env_name)
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            names |= setting_env_names(field.annotation, f"{env_name}__")
    return names


def unknown_environment_settings(environ: Mapping[str, str]) -> list[str]:
    """A line per MLOPS_* environment variable that is no setting (a typo pydantic would skip
    silently), naming the closest valid one."""
    known = setting_env_names()
    lines = []
    for name in sorted(environ):
        key = name.upper()
        if not key.startswith(ENV_PREFIX) or key in known or key.removeprefix(ENV_PREFIX).startswith(NOT_SETTINGS):
            continue
        closest = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        hint = f"did you mean {closest[0]}?" if closest else "check its spelling against .env.example."
        lines.append(f"  {name}: unknown setting in the environment. Fix: {hint}")
    return lines


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide Settings, built on first use (never at import time)."""
    return load_settings()
