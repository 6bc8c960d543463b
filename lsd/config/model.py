"""The parsed configuration: frozen, typed objects built once from TOML by lsd.config.loader."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from lsd.config.auth import AuthConfig
from lsd.config.inbound import InboundConfig
from lsd.config.ratelimit import RateLimitingConfig
from lsd.types import BodyPatch, HeaderPatch, InferenceParams

if TYPE_CHECKING:
    from lsd.config.evaluations import EvaluationConfig

FunctionType = Literal["chat", "json"]


@dataclass(frozen=True, slots=True)
class BatchWritesConfig:
    enabled: bool = True
    flush_interval_ms: int = 100
    max_rows: int = 1000


@dataclass(frozen=True, slots=True)
class ObservabilityConfig:
    enabled: bool = True
    async_writes: bool = True
    batch_writes: BatchWritesConfig = field(default_factory=BatchWritesConfig)
    max_queue_rows: int = 100_000
    max_queue_bytes: int = 256 * 1024**2  # about, as lsd.store.footprint estimates it
    spool_dir: Path = Path(".lsd/spool")  # the loader makes it absolute
    spool_max_bytes: int = 1024**3
    shutdown_flush_timeout_s: float = 10.0
    # "journal": every accepted group is fsync'd to <spool_dir>/journal before the response (docs/durability.md).
    durability: Literal["queue", "journal"] = "queue"
    retention_days: int | None = None  # drop daily partitions wholly older than this; None keeps everything
    statistics_refresh_interval_s: float = 10.0  # 0 turns the statistics job off
    # An input's long strings stored once a day in input_strings (lsd.store.input_strings); false: kept inline
    input_strings_once: bool = True


@dataclass(frozen=True, slots=True)
class DatabaseConfig:
    connect_timeout_s: float = 30.0
    disable_automatic_migrations: bool = False
    pool_min_size: int = 2
    pool_max_size: int = 20
    partitions_ahead_days: int = 7
    prepared_statements: bool = True  # false behind a transaction-mode PgBouncer older than 1.21
    acquire_timeout_s: float = 2.0  # a request waits this long for a pool connection, then answers 503


# Histogram buckets in seconds. Overhead is sub-millisecond when healthy, so its buckets start at 50 µs.
DEFAULT_LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
DEFAULT_OVERHEAD_BUCKETS_S = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
DEFAULT_TTFT_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """`[gateway.metrics]`: the Prometheus histograms' buckets (seconds)."""

    latency_buckets: tuple[float, ...] = DEFAULT_LATENCY_BUCKETS_S
    overhead_buckets: tuple[float, ...] = DEFAULT_OVERHEAD_BUCKETS_S
    ttft_buckets: tuple[float, ...] = DEFAULT_TTFT_BUCKETS_S


@dataclass(frozen=True, slots=True)
class OtlpTracesConfig:
    """`[gateway.export.otlp.traces]`: OTLP span export. None endpoint/protocol: the OTEL_* variables decide."""

    enabled: bool = False
    protocol: str | None = None  # "http/protobuf" or "grpc"
    endpoint: str | None = None
    extra_headers: Mapping[str, str] = field(default_factory=dict)
    include_content: bool = False


@dataclass(frozen=True, slots=True)
class BatchConfig:
    poll_interval_s: float = 30.0  # a provider batch is polled at most this often, however many ask


@dataclass(frozen=True, slots=True)
class UiConfig:
    """`[gateway.ui]`: the console at /ui (lsd.api.console)."""

    enabled: bool = True
    session_ttl_s: int = 43_200  # a console sign-in lasts this long (with gateway.auth on)


@dataclass(frozen=True, slots=True)
class TemplateFilesystemAccess:
    """`[gateway.template_filesystem_access]`: the folder `{% include %}` and `{% import %}` read from (None: off)."""

    base_path: Path | None = None


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    bind_address: str = "127.0.0.1:3000"
    max_body_bytes: int = 10 * 1024 * 1024
    graceful_timeout_s: float = 30.0
    # The HTTP server `lsd serve` runs the app under: uvicorn (httptools) by default, hypercorn for HTTP/2.
    http_server: Literal["uvicorn", "hypercorn"] = "uvicorn"
    observability: ObservabilityConfig = field(default_factory=ObservabilityConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    max_json_depth: int = 64
    max_header_count: int = 100
    max_header_bytes: int = 16 * 1024
    request_timeout_s: float = 300.0  # until the response starts; 0 turns it off
    # Peers whose X-Forwarded-For/-Proto are believed (networks, e.g. "10.0.0.0/8"); others' are ignored.
    trusted_proxies: tuple[IPv4Network | IPv6Network, ...] = ()
    # Web origins whose pages may call the API from the browser with their own key (CORS); "*" for any.
    cors_allowed_origins: tuple[str, ...] = ()
    batch: BatchConfig = field(default_factory=BatchConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    otlp_traces: OtlpTracesConfig = field(default_factory=OtlpTracesConfig)
    template_filesystem_access: TemplateFilesystemAccess = field(default_factory=TemplateFilesystemAccess)
    # TensorZero's: an `error_json` field beside `error` in error bodies.
    unstable_error_json: bool = False
    # TensorZero keys accepted for compatibility; LSD does not act on them (docs/configuration.md says why).
    debug: bool = False
    unstable_disable_feedback_target_validation: bool = False
    disable_pseudonymous_usage_analytics: bool = False
    fetch_and_encode_input_files_before_inference: bool = False
    global_outbound_http_timeout_ms: int = 900_000
    ui: UiConfig = field(default_factory=UiConfig)
    # Requests may carry `internal_dynamic_variant_config` (templates and model run in the gateway): by default
    # only while auth is off (a development gateway whose callers are trusted).
    allow_dynamic_variants: bool = True


@dataclass(frozen=True, slots=True)
class TimeoutsConfig:
    non_streaming_total_ms: int | None = None
    streaming_ttft_ms: int | None = None
    streaming_total_ms: int | None = None


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    """A provider entry; `options` holds the type-specific keys, parsed by the provider plugin itself."""

    name: str
    type: str
    options: Mapping[str, Any]
    key_path: str
    base_dir: Path
    timeouts: TimeoutsConfig = field(default_factory=TimeoutsConfig)
    # The provider's own edits to each request it sends (applied before its variant's and the request's).
    extra_body: tuple[BodyPatch, ...] = ()
    extra_headers: tuple[HeaderPatch, ...] = ()


@dataclass(frozen=True, slots=True)
class RetryConfig:
    num_retries: int = 0
    max_delay_s: float = 10.0


@dataclass(frozen=True, slots=True)
class ModelConfig:
    name: str
    routing: tuple[str, ...]
    providers: Mapping[str, ProviderConfig]
    timeouts: TimeoutsConfig = field(default_factory=TimeoutsConfig)
    retries: RetryConfig = field(default_factory=RetryConfig)  # [embedding_models.*] only


@dataclass(frozen=True, slots=True)
class TemplateConfig:
    """A Jinja2 template: its source text and where it came from (for error messages)."""

    source: str
    path: Path
    key_path: str = ""  # the TOML key that names it, for start-up errors
    # TensorZero's legacy role templates (`user_template`, `input_wrappers.user`, ...) with no schema render a plain
    # text block of their role with the text as `user_text` / `assistant_text` / `system_text`.
    legacy: bool = False


# TensorZero's variant types, by LSD's canonical names (lsd.config.variant_types reads the `experimental_*` ones too).
VariantType = Literal["chat_completion", "best_of_n_sampling", "mixture_of_n", "dicl", "chain_of_thought"]


@dataclass(frozen=True, slots=True)
class CandidatesConfig:
    """A best_of_n_sampling or mixture_of_n variant's candidates (variant names, repeats allowed) and how long to
    wait for them; the variant's own model, templates and params are its evaluator's (or fuser's)."""

    candidates: tuple[str, ...]
    timeout_s: float = 300.0


@dataclass(frozen=True, slots=True)
class DiclConfig:
    """A dicl variant's retrieval: the embedding model, how many stored examples, how far they may be."""

    embedding_model: str
    k: int
    max_distance: float | None = None  # cosine distance; None keeps the k nearest whatever their distance
    system_instructions: str | None = None  # the file's text; None: the built-in instructions


@dataclass(frozen=True, slots=True)
class VariantConfig:
    name: str
    type: VariantType
    model: str
    weight: float | None
    params: InferenceParams
    retries: RetryConfig = field(default_factory=RetryConfig)
    timeouts: TimeoutsConfig = field(default_factory=TimeoutsConfig)
    # Templates by role name ("system", "user", "assistant") or by a named template.
    templates: Mapping[str, TemplateConfig] = field(default_factory=dict)
    # Edits to each provider request the variant makes (after the provider's own, before the request's).
    extra_body: tuple[BodyPatch, ...] = ()
    extra_headers: tuple[HeaderPatch, ...] = ()
    candidates: CandidatesConfig | None = None  # best_of_n_sampling and mixture_of_n only
    dicl: DiclConfig | None = None  # dicl only


@dataclass(frozen=True, slots=True)
class ToolConfig:
    name: str  # the name sent to the model
    key: str  # the [tools.KEY] key
    description: str
    parameters: Mapping[str, Any]
    strict: bool = False


ToolChoice = str | Mapping[str, str]


@dataclass(frozen=True, slots=True)
class ExperimentationConfig:
    """`[functions.F.experimentation]`: how routing samples the variants (lsd.inference.experiment)."""

    type: Literal["static", "adaptive"]
    candidate_variants: Mapping[str, float]  # a list is uniform: each weight 1.0
    fallback_variants: tuple[str, ...] = ()
    metric: str | None = None  # adaptive only
    delta: float = 0.05
    epsilon: float = 0.0
    min_prob: float = 0.0
    min_samples_per_variant: int = 10
    update_period_s: int = 300
    namespaces: Mapping[str, ExperimentationConfig] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class FunctionConfig:
    name: str
    type: FunctionType
    variants: Mapping[str, VariantConfig]
    description: str | None = None
    output_schema: Mapping[str, Any] | None = None
    # JSON Schemas of template arguments: by role ("system", "user", "assistant") and by `schemas.NAME`.
    schemas: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    tools: tuple[str, ...] = ()
    tool_choice: ToolChoice = "auto"
    parallel_tool_calls: bool | None = None
    experimentation: ExperimentationConfig | None = None
    # `[functions.F.evaluators.E]` tables as written (their `type` checked); LSD runs none of them.
    evaluators: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class MetricConfig:
    name: str
    type: Literal["boolean", "float"]
    optimize: Literal["max", "min"]
    level: Literal["inference", "episode"]
    description: str | None = None


@dataclass(frozen=True, slots=True)
class Config:
    gateway: GatewayConfig
    models: Mapping[str, ModelConfig]
    functions: Mapping[str, FunctionConfig]
    tools: Mapping[str, ToolConfig] = field(default_factory=dict)
    embedding_models: Mapping[str, ModelConfig] = field(default_factory=dict)
    metrics: Mapping[str, MetricConfig] = field(default_factory=dict)
    evaluations: Mapping[str, EvaluationConfig] = field(default_factory=dict)
    rate_limiting: RateLimitingConfig = field(default_factory=RateLimitingConfig)
    source_text: str = ""
    source_hash: str = ""
    path: Path | None = None  # the first file
    paths: tuple[Path, ...] = ()  # every file, in load order
    # TensorZero top-level tables LSD accepts and does not act on ([object_storage], [provider_types], ...).
    accepted: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    inbound: InboundConfig = field(default_factory=InboundConfig)  # [inbound.anthropic]: client model names
