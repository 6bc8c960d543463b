-- LSD schema, version 15: time-to-first-token histograms of streamed attempts, beside the latency histograms
-- (the console's overview draws their p50/p99 over time). Same buckets (lsd_latency_bounds) and the same refresh:
-- lsd/store/statistics.py adds each new successful attempt that has a ttft_ms. Attempts recorded before this
-- migration are not counted.

CREATE TABLE model_ttft_histogram_minute (
    model_name text NOT NULL,
    model_provider_name text NOT NULL,
    bucket_start timestamptz NOT NULL,
    le_ms integer NOT NULL,
    count bigint NOT NULL,
    PRIMARY KEY (model_name, model_provider_name, bucket_start, le_ms)
);
CREATE INDEX model_ttft_histogram_minute_start ON model_ttft_histogram_minute (bucket_start);

CREATE TABLE model_ttft_histogram_hour (
    model_name text NOT NULL,
    model_provider_name text NOT NULL,
    bucket_start timestamptz NOT NULL,
    le_ms integer NOT NULL,
    count bigint NOT NULL,
    PRIMARY KEY (model_name, model_provider_name, bucket_start, le_ms)
);
CREATE INDEX model_ttft_histogram_hour_start ON model_ttft_histogram_hour (bucket_start);
