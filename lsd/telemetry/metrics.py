"""Prometheus metrics: one `Metrics` object per runtime, its own registry, and the `/metrics` exposition.

Single process: a plain CollectorRegistry per Metrics object. `lsd serve --workers N`: the supervisor points
PROMETHEUS_MULTIPROC_DIR at a fresh folder before the workers start (prometheus-client picks its value class
when first imported, so the variable must be set before that), every worker writes its own mmap files, and
`/metrics` sums them with a MultiProcessCollector. The request path never touches prometheus-client (its every
increment takes a lock, and in multiprocess mode writes an mmap): it adds to plain per-label-tuple floats and
bucket counts, which `flush()` moves into the prometheus-client values before every scrape and every second.
Recording an inference costs a dict lookup and a few additions (see `bench/telemetry_cost.py`).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)

from lsd.errors import CLIENT_GONE

FLUSH_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
REFRESH_BUCKETS_S = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


def multiprocess_mode() -> bool:
    """True when prometheus-client was imported with PROMETHEUS_MULTIPROC_DIR set (its values are mmap files)."""
    return bool(getattr(values.ValueClass, "_multiprocess", False))


class _Counter:
    """A counter child's increments, held in a float until `flush` (the event loop is single-threaded)."""

    __slots__ = ("child", "value")

    def __init__(self, child: Any) -> None:
        self.child = child
        self.value = 0.0

    def flush(self) -> None:
        if self.value:
            value, self.value = self.value, 0.0
            self.child.inc(value)


class _Histogram:
    """A histogram child's observations, held as per-bucket counts until `flush` adds each bucket once.

    prometheus-client has no public bulk observe: `flush` adds to the child's `_buckets` and `_sum` values
    (non-cumulative per-bucket counts, as its `observe` keeps them; tests/integration/test_metrics.py pins it)."""

    __slots__ = ("bounds", "child", "counts", "dirty", "sum")

    def __init__(self, child: Any, bounds: tuple[float, ...]) -> None:
        self.child = child
        self.bounds = bounds  # without +Inf: index len(bounds) is the +Inf bucket
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0
        self.dirty = False

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.dirty = True

    def flush(self) -> None:
        if not self.dirty:
            return
        buckets = self.child._buckets
        counts = self.counts
        for i, count in enumerate(counts):
            if count:
                buckets[i].inc(count)
                counts[i] = 0
        total, self.sum, self.dirty = self.sum, 0.0, False
        self.child._sum.inc(total)


# A model named in the request (a shorthand such as `openai::gpt-4o`, which is also the default function's variant)
# gets a label of its own for the first this many distinct names; later ones are counted as OTHER_LABEL, so a
# client inventing names cannot grow the series (and /metrics) without bound.
NAMED_SHORTHANDS = 100
OTHER_LABEL = "other"


class _InferenceChildren:
    """What one (function, variant, model, provider, outcome, stream) combination records to."""

    __slots__ = ("cost", "count", "input_tokens", "latency", "output_tokens", "overhead", "ttft")

    def __init__(self, metrics: Metrics, labels: tuple[str, ...]) -> None:
        by_model = labels[:4]
        self.count = _Counter(metrics.inferences.labels(*labels))
        self.latency = _Histogram(metrics.inference_latency.labels(*labels), metrics.latency_buckets)
        self.overhead = _Histogram(metrics.overhead.labels(*labels), metrics.overhead_buckets)
        self.ttft = _Histogram(metrics.ttft.labels(*by_model), metrics.ttft_buckets)
        self.input_tokens = _Counter(metrics.input_tokens.labels(*by_model))
        self.output_tokens = _Counter(metrics.output_tokens.labels(*by_model))
        self.cost = _Counter(metrics.cost.labels(*by_model))

    def flush(self) -> None:
        for pending in (self.count, self.latency, self.overhead, self.ttft, self.input_tokens, self.output_tokens):
            pending.flush()
        self.cost.flush()


class Metrics:
    """Every LSD metric family. Methods take plain values, so any layer may record without importing another."""

    def __init__(
        self,
        *,
        latency_buckets: Sequence[float],
        overhead_buckets: Sequence[float],
        ttft_buckets: Sequence[float],
        configured_models: frozenset[str] = frozenset(),
    ) -> None:
        self.multiprocess = multiprocess_mode()
        self.configured_models = configured_models
        self._named: set[str] = set()  # shorthand model names given labels of their own (NAMED_SHORTHANDS at most)
        self.latency_buckets = tuple(latency_buckets)
        self.overhead_buckets = tuple(overhead_buckets)
        self.ttft_buckets = tuple(ttft_buckets)
        # In multiprocess mode values live in the mmap files; the families are not registered anywhere.
        self.registry = CollectorRegistry(auto_describe=True)
        reg: CollectorRegistry | None = None if self.multiprocess else self.registry
        if self.multiprocess:
            multiprocess.MultiProcessCollector(self.registry)  # type: ignore[no-untyped-call]
        self._inference_children: dict[tuple[str, ...], _InferenceChildren] = {}
        # The request path adds to these; `flush()` moves them into the prometheus-client values.
        self._http_children: dict[tuple[str, str, int], tuple[_Counter, _Histogram]] = {}
        self._attempt_children: dict[tuple[str, str, str | None], tuple[_Counter, _Histogram, _Counter | None]] = {}
        self._pending: list[_Counter | _Histogram | _InferenceChildren] = []
        self._samplers: list[Callable[[], None]] = []

        def counter(name: str, doc: str, labels: Sequence[str] = ()) -> Counter:
            return Counter(name, doc, labels, registry=reg)

        def gauge(name: str, doc: str, labels: Sequence[str] = (), mode: str = "livesum") -> Gauge:
            return Gauge(name, doc, labels, registry=reg, multiprocess_mode=mode)  # type: ignore[arg-type]

        def histogram(name: str, doc: str, labels: Sequence[str], buckets: Sequence[float]) -> Histogram:
            return Histogram(name, doc, labels, registry=reg, buckets=buckets)

        inference = ("function", "variant", "model", "provider", "outcome", "stream")
        by_model = ("function", "variant", "model", "provider")
        self.http_requests = counter("lsd_http_requests_total", "HTTP requests answered", ("route", "method", "status"))
        self.http_in_flight = gauge(
            "lsd_http_requests_in_flight", "HTTP requests received and not yet fully answered (open streams included)"
        )
        self.http_latency = histogram(
            "lsd_http_request_duration_seconds", "HTTP request latency", ("route", "method"), latency_buckets
        )
        self.inferences = counter("lsd_inferences_total", "Inferences by outcome (ok, error, cancelled)", inference)
        self.inference_latency = histogram(
            "lsd_inference_duration_seconds", "Inference latency inside the gateway", inference, latency_buckets
        )
        self.overhead = histogram(
            "lsd_gateway_overhead_seconds",
            "Inference latency minus the time spent waiting on providers",
            inference,
            overhead_buckets,
        )
        self.ttft = histogram(
            "lsd_time_to_first_token_seconds", "Time to the first streamed chunk", by_model, ttft_buckets
        )
        self.input_tokens = counter("lsd_input_tokens_total", "Input tokens of answered inferences", by_model)
        self.output_tokens = counter("lsd_output_tokens_total", "Output tokens of answered inferences", by_model)
        self.cost = counter("lsd_cost_total", "Cost of answered inferences, in the pricing's currency", by_model)
        self.provider_attempts = counter(
            "lsd_provider_attempts_total", "Provider calls (cache hits excluded)", ("model", "provider", "outcome")
        )
        self.provider_errors = counter(
            "lsd_provider_errors_total", "Failed provider calls by error kind", ("model", "provider", "kind")
        )
        self.provider_latency = histogram(
            "lsd_provider_duration_seconds", "Provider call latency", ("model", "provider"), latency_buckets
        )
        self.retries = counter("lsd_retries_total", "Repeated tries of the same variant", ("function", "variant"))
        self.fallbacks = counter(
            "lsd_fallbacks_total", "Moves to the next provider or variant after a failure", ("function", "kind")
        )
        self.cache = counter("lsd_cache_requests_total", "Inference cache lookups", ("result",))
        self._cache_hit, self._cache_miss = _Counter(self.cache.labels("hit")), _Counter(self.cache.labels("miss"))
        self._pending += [self._cache_hit, self._cache_miss]
        self.cache_errors = counter(
            "lsd_cache_errors_total",
            "Inference cache reads (a miss) and writes (skipped) PostgreSQL failed",
            ("operation",),
        )
        self.rate_limit_refusals = counter(
            "lsd_rate_limit_refusals_total", "Requests refused by a rate limit", ("rule",)
        )
        self.auth_failures = counter("lsd_auth_failures_total", "Requests refused by authentication", ("reason",))
        self.auth_stale_verdicts = counter(
            "lsd_auth_stale_verdicts_total",
            "Key checks answered from a cached verdict because PostgreSQL was unreachable",
        )
        self.rate_limit_failed_open = counter(
            "lsd_rate_limit_failed_open_total",
            "Requests admitted without their rate limits because PostgreSQL was unreachable (fail_open)",
        )
        self.feedback = counter("lsd_feedback_total", "Feedback requests by kind and outcome", ("kind", "outcome"))
        self.batches = counter(
            "lsd_batches_total",
            "Provider batches whose results were recorded",
            ("function", "model", "provider", "status"),
        )
        self.batch_inferences = counter(
            "lsd_batch_inferences_total",
            "Batch inputs whose result was recorded, by outcome (ok, error)",
            (*by_model, "outcome"),
        )
        self.writer_queue = gauge("lsd_writer_queue_rows", "Rows waiting in the writer's memory queue")
        self.writer_queue_bytes = gauge(
            "lsd_writer_queue_bytes",
            "About how much memory the rows in the writer's queue hold (estimated once the queue passes 1000 rows)",
        )
        self.writer_spool_bytes = gauge("lsd_writer_spool_bytes", "Bytes in the writer's spool files")
        self.writer_written = counter("lsd_writer_rows_written_total", "Rows committed to PostgreSQL", ("table",))
        self.writer_spooled = counter("lsd_writer_rows_spooled_total", "Rows moved to the disk spool", ("table",))
        self.writer_dropped = counter("lsd_writer_rows_dropped_total", "Rows lost (spool full/unwritable)", ("table",))
        self.writer_rejected = counter(
            "lsd_writer_rows_rejected_total",
            "Rows refused by PostgreSQL or not encodable, kept in <spool_dir>/rejected/",
            ("table", "reason"),
        )
        self.writer_flush_failures = counter("lsd_writer_flush_failures_total", "Failed flush attempts")
        # The writer's cumulative counts that are not per table, brought up to date at each scrape (set_writer_state).
        self.writer_totals = {
            "replayed_rows": counter("lsd_writer_rows_replayed_total", "Rows read back from the spool and committed"),
            "spool_torn_frames": counter(
                "lsd_writer_spool_torn_frames_total", "Spool/journal frames skipped on replay: torn or damaged"
            ),
            "spool_foreign_files": counter(
                "lsd_writer_spool_foreign_files_total", "Spool files of another database set aside, not replayed"
            ),
            "journaled_rows": counter("lsd_writer_rows_journaled_total", "Rows fsync'd to the journal before answers"),
            "journal_failed_rows": counter(
                "lsd_writer_journal_failed_rows_total",
                "Rows that could not be journaled (disk full, spool_max_bytes): answered with the queue's guarantee",
            ),
        }
        self._writer_seen: dict[str, int] = dict.fromkeys(self.writer_totals, 0)
        self.writer_flush = histogram("lsd_writer_flush_duration_seconds", "Flush (COPY) latency", (), FLUSH_BUCKETS_S)
        self.pool_size = gauge("lsd_db_pool_connections", "Open connections in the request pool")
        self.pool_in_use = gauge("lsd_db_pool_in_use_connections", "Pool connections lent out")
        self.pool_waiting = gauge("lsd_db_pool_waiting_requests", "Requests waiting for a pool connection")
        self.pool_max = gauge("lsd_db_pool_max_connections", "The pool's maximum size")
        self.database_unavailable = counter(
            "lsd_database_unavailable_total", "Request-path database calls PostgreSQL could not answer", ("purpose",)
        )
        self.statistics_refresh = histogram(
            "lsd_statistics_refresh_duration_seconds", "Statistics refresh duration", (), REFRESH_BUCKETS_S
        )
        self.statistics_refresh_failures = counter(
            "lsd_statistics_refresh_failures_total",
            "Statistics refreshes that failed (the job retries at its interval)",
        )

    # -- exposition --------------------------------------------------------------------------------------------

    def add_sampler(self, sampler: Callable[[], None]) -> None:
        """`sampler` sets gauges from a resource's stats (pool, writer queue); run by `sample()`."""
        self._samplers.append(sampler)

    def sample(self) -> None:
        """Refresh the sampled gauges and flush the request path's pending counts: before every scrape, and
        every second (the `metrics` job), so that under `--workers N` a scrape answered by one
        worker sees the others' counts at most that old."""
        for sampler in self._samplers:
            sampler()
        self.flush()

    def flush(self) -> None:
        for pending in self._pending:
            pending.flush()

    def exposition(self) -> tuple[bytes, str]:
        """Sample and flush, then the text format body and its content type."""
        self.sample()
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    # -- request path ------------------------------------------------------------------------------------------

    def observe_http(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        children = self._http_children.get(key)
        if children is None:
            children = (
                _Counter(self.http_requests.labels(route, method, str(status))),
                _Histogram(self.http_latency.labels(route, method), self.latency_buckets),
            )
            self._http_children[key] = children
            self._pending.extend(children)
        children[0].value += 1
        children[1].observe(seconds)

    def observe_inference(
        self,
        labels: tuple[str, str, str, str, str, str],
        seconds: float,
        overhead_seconds: float,
        ttft_seconds: float | None,
        input_tokens: int | None,
        output_tokens: int | None,
        cost: float | None,
    ) -> None:
        """One finished inference. `labels`: function, variant, model, provider, outcome ("ok", "error",
        "cancelled"), stream."""
        c = self._inference_children.get(labels)
        if c is None:
            c = self._inference_children_of(labels)
        c.count.value += 1
        c.latency.observe(seconds)
        c.overhead.observe(overhead_seconds)
        if ttft_seconds is not None:
            c.ttft.observe(ttft_seconds)
        if input_tokens:
            c.input_tokens.value += input_tokens
        if output_tokens:
            c.output_tokens.value += output_tokens
        if cost:
            c.cost.value += cost

    def _inference_children_of(self, labels: tuple[str, str, str, str, str, str]) -> _InferenceChildren:
        """The children of a label tuple not seen yet, its model and variant names bounded (`label`): kept under
        the tuple as given only when it is its own label tuple, so invented names do not grow the map either."""
        function, variant, model, *rest = labels
        bounded = (function, self.label(variant), self.label(model), *rest)
        c = self._inference_children.get(bounded)
        if c is None:
            c = self._inference_children[bounded] = _InferenceChildren(self, bounded)
            self._pending.append(c)
        return c

    def label(self, name: str) -> str:
        """A model (or variant) name as a label value: a configured model's, any name not a shorthand (`::`-free:
        a configured variant's), and the first NAMED_SHORTHANDS shorthand names as they are; OTHER_LABEL after."""
        if name in self.configured_models or "::" not in name or name in self._named:
            return name
        if len(self._named) < NAMED_SHORTHANDS:
            self._named.add(name)
            return name
        return OTHER_LABEL

    def observe_provider_attempt(self, model: str, provider: str, error_kind: str | None, seconds: float) -> None:
        """One provider call; `error_kind` None for a success, CLIENT_GONE for a stream its client left (outcome
        `cancelled`: the provider did not fail, so no provider error is counted)."""
        key = (model, provider, error_kind)
        children = self._attempt_children.get(key)
        if children is None and (model := self.label(model)) != key[0]:
            key = (model, provider, error_kind)  # a name past the bound: its series (and this map) are `other`'s
            children = self._attempt_children.get(key)
        if children is None:
            gone = error_kind == CLIENT_GONE
            outcome = "cancelled" if gone else "error" if error_kind else "ok"
            children = (
                _Counter(self.provider_attempts.labels(model, provider, outcome)),
                _Histogram(self.provider_latency.labels(model, provider), self.latency_buckets),
                _Counter(self.provider_errors.labels(model, provider, error_kind)) if error_kind and not gone else None,
            )
            self._attempt_children[key] = children
            self._pending.extend(c for c in children if c is not None)
        children[0].value += 1
        children[1].observe(seconds)
        if children[2] is not None:
            children[2].value += 1

    def observe_retry(self, function: str, variant: str) -> None:
        self.retries.labels(function, self.label(variant)).inc()

    def observe_fallback(self, function: str, kind: str) -> None:
        """`kind`: "provider" (next provider of the model) or "variant" (next variant of the function)."""
        self.fallbacks.labels(function, kind).inc()

    def observe_cache(self, hit: bool) -> None:
        (self._cache_hit if hit else self._cache_miss).value += 1

    def observe_cache_error(self, operation: str) -> None:
        """A cache `read` (answered as a miss) or `write` (skipped) that PostgreSQL could not serve."""
        self.cache_errors.labels(operation).inc()

    def observe_rate_limit_refusal(self, rule: str) -> None:
        self.rate_limit_refusals.labels(rule).inc()

    def observe_auth_failure(self, reason: str) -> None:
        self.auth_failures.labels(reason).inc()

    def observe_feedback(self, kind: str, outcome: str) -> None:
        self.feedback.labels(kind, outcome).inc()

    def observe_batch(self, function: str, model: str, provider: str, status: str) -> None:
        """A provider batch ended and this process recorded its results (once per cluster)."""
        self.batches.labels(function, self.label(model), provider, status).inc()

    def observe_batch_result(
        self,
        by_model: tuple[str, str, str, str],
        ok: bool,
        input_tokens: int | None,
        output_tokens: int | None,
        cost: float | None,
    ) -> None:
        """One batch input's recorded result; its tokens and cost go to the same counters as live inferences."""
        function, variant, model, provider = by_model
        by_model = (function, self.label(variant), self.label(model), provider)
        self.batch_inferences.labels(*by_model, "ok" if ok else "error").inc()
        if input_tokens:
            self.input_tokens.labels(*by_model).inc(input_tokens)
        if output_tokens:
            self.output_tokens.labels(*by_model).inc(output_tokens)
        if cost:
            self.cost.labels(*by_model).inc(cost)

    # -- writer, pool, jobs ------------------------------------------------------------------------------------

    def observe_flush(self, written: Mapping[str, int], seconds: float, queued_rows: int) -> None:
        for table, rows in written.items():
            self.writer_written.labels(table).inc(rows)
        self.writer_flush.observe(seconds)
        self.writer_queue.set(queued_rows)

    def observe_flush_failure(self) -> None:
        self.writer_flush_failures.inc()

    def observe_spooled(self, rows: Mapping[str, int], spool_bytes: int) -> None:
        for table, count in rows.items():
            self.writer_spooled.labels(table).inc(count)
        self.writer_spool_bytes.set(spool_bytes)

    def observe_dropped(self, rows: Mapping[str, int]) -> None:
        for table, count in rows.items():
            self.writer_dropped.labels(table).inc(count)

    def observe_rejected(self, rows: Mapping[str, int], reason: str = "unknown") -> None:
        """`reason`: the SQLSTATE PostgreSQL answered (22021: a NUL or bad encoding in text, 23514: no
        partition...), or `unencodable` for rows that could not even be encoded."""
        for table, count in rows.items():
            self.writer_rejected.labels(table, reason).inc(count)

    def set_writer_state(
        self, queued_rows: int, spool_bytes: int, queued_bytes: int, totals: Mapping[str, int] | None = None
    ) -> None:
        """The writer's gauges, and its cumulative `totals` (WriterStats fields named in writer_totals): each counter
        goes up by what the total grew since the last call."""
        self.writer_queue.set(queued_rows)
        self.writer_queue_bytes.set(queued_bytes)
        self.writer_spool_bytes.set(spool_bytes)
        for name, total in (totals or {}).items():
            grown = total - self._writer_seen[name]
            if grown > 0:
                self.writer_totals[name].inc(grown)
                self._writer_seen[name] = total

    def set_in_flight(self, requests: int) -> None:
        self.http_in_flight.set(requests)

    def set_pool(self, size: int, in_use: int, waiting: int, max_size: int) -> None:
        self.pool_size.set(size)
        self.pool_in_use.set(in_use)
        self.pool_waiting.set(waiting)
        self.pool_max.set(max_size)

    def observe_database_unavailable(self, purpose: str) -> None:
        self.database_unavailable.labels(purpose).inc()

    def observe_statistics_refresh(self, seconds: float) -> None:
        self.statistics_refresh.observe(seconds)

    def count_statistics_refresh_failure(self) -> None:
        self.statistics_refresh_failures.inc()
