"""The writer's cumulative counts reach /metrics as counters that grow by what the count grew between scrapes."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from lsd.telemetry.metrics import Metrics


def totals(metrics: Metrics) -> dict[str, float]:
    text = metrics.exposition()[0].decode()
    return {
        s.name: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith("lsd_writer_") and s.name.endswith("_total")
    }


def test_replays_torn_frames_and_journal_failures_are_counted() -> None:
    metrics = Metrics(latency_buckets=(1.0,), overhead_buckets=(1.0,), ttft_buckets=(1.0,))
    stats = {"replayed_rows": 40, "spool_torn_frames": 1, "spool_foreign_files": 0, "journaled_rows": 100,
             "journal_failed_rows": 3}  # fmt: skip
    metrics.set_writer_state(0, 0, 0, stats)
    metrics.set_writer_state(0, 0, 0, {**stats, "replayed_rows": 50, "journal_failed_rows": 5})
    seen = totals(metrics)
    assert seen["lsd_writer_rows_replayed_total"] == 50
    assert seen["lsd_writer_spool_torn_frames_total"] == 1
    assert seen["lsd_writer_rows_journaled_total"] == 100
    assert seen["lsd_writer_journal_failed_rows_total"] == 5
    assert seen["lsd_writer_spool_foreign_files_total"] == 0
