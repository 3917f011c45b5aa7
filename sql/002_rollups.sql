-- Per-minute rollup. Every aggregation keeps a mergeable exact state (uniqExact, argMax), so
-- minute, hour and day rollups merge to the same answer as the raw values over any range.
CREATE TABLE IF NOT EXISTS ${DB}.meter_usage_1m
(
    meter_id String,
    subject String,
    group_by Map(String, String),
    window_start DateTime('UTC'),
    value_sum AggregateFunction(sum, Decimal(38, 9)),
    value_count AggregateFunction(count),
    value_min AggregateFunction(min, Decimal(38, 9)),
    value_max AggregateFunction(max, Decimal(38, 9)),
    value_unique AggregateFunction(uniqExact, String),
    value_latest AggregateFunction(argMax, Decimal(38, 9), Tuple(DateTime64(3, 'UTC'), String, String))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(window_start)
ORDER BY (meter_id, subject, window_start, group_by)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS ${DB}.meter_usage_1m_mv TO ${DB}.meter_usage_1m AS
SELECT
    meter_id,
    subject,
    group_by,
    toStartOfMinute(toDateTime(time, 'UTC')) AS window_start,
    sumState(value) AS value_sum,
    countState() AS value_count,
    minState(value) AS value_min,
    maxState(value) AS value_max,
    uniqExactState(value_key) AS value_unique,
    argMaxState(value, (time, source, id)) AS value_latest
FROM ${DB}.meter_values
GROUP BY meter_id, subject, group_by, window_start;

-- Per-hour rollup. Every aggregation keeps a mergeable exact state (uniqExact, argMax), so
-- minute, hour and day rollups merge to the same answer as the raw values over any range.
CREATE TABLE IF NOT EXISTS ${DB}.meter_usage_1h
(
    meter_id String,
    subject String,
    group_by Map(String, String),
    window_start DateTime('UTC'),
    value_sum AggregateFunction(sum, Decimal(38, 9)),
    value_count AggregateFunction(count),
    value_min AggregateFunction(min, Decimal(38, 9)),
    value_max AggregateFunction(max, Decimal(38, 9)),
    value_unique AggregateFunction(uniqExact, String),
    value_latest AggregateFunction(argMax, Decimal(38, 9), Tuple(DateTime64(3, 'UTC'), String, String))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(window_start)
ORDER BY (meter_id, subject, window_start, group_by)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS ${DB}.meter_usage_1h_mv TO ${DB}.meter_usage_1h AS
SELECT
    meter_id,
    subject,
    group_by,
    toStartOfHour(toDateTime(time, 'UTC')) AS window_start,
    sumState(value) AS value_sum,
    countState() AS value_count,
    minState(value) AS value_min,
    maxState(value) AS value_max,
    uniqExactState(value_key) AS value_unique,
    argMaxState(value, (time, source, id)) AS value_latest
FROM ${DB}.meter_values
GROUP BY meter_id, subject, group_by, window_start;

-- Per-day (UTC) rollup. Every aggregation keeps a mergeable exact state (uniqExact, argMax), so
-- minute, hour and day rollups merge to the same answer as the raw values over any range.
CREATE TABLE IF NOT EXISTS ${DB}.meter_usage_1d
(
    meter_id String,
    subject String,
    group_by Map(String, String),
    window_start DateTime('UTC'),
    value_sum AggregateFunction(sum, Decimal(38, 9)),
    value_count AggregateFunction(count),
    value_min AggregateFunction(min, Decimal(38, 9)),
    value_max AggregateFunction(max, Decimal(38, 9)),
    value_unique AggregateFunction(uniqExact, String),
    value_latest AggregateFunction(argMax, Decimal(38, 9), Tuple(DateTime64(3, 'UTC'), String, String))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(window_start)
ORDER BY (meter_id, subject, window_start, group_by)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS ${DB}.meter_usage_1d_mv TO ${DB}.meter_usage_1d AS
SELECT
    meter_id,
    subject,
    group_by,
    toStartOfDay(toDateTime(time, 'UTC')) AS window_start,
    sumState(value) AS value_sum,
    countState() AS value_count,
    minState(value) AS value_min,
    maxState(value) AS value_max,
    uniqExactState(value_key) AS value_unique,
    argMaxState(value, (time, source, id)) AS value_latest
FROM ${DB}.meter_values
GROUP BY meter_id, subject, group_by, window_start;

