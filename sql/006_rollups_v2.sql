-- Rollups v2: sums that never wrap. A sum state over Decimal(38, 9) (002_rollups.sql) holds at most
-- 29 integer digits, the range of one value, so two values of 9e28 summed to a negative number.
-- These tables keep `sumState(toDecimal256(value, 9))`, AggregateFunction(sum, Decimal(76, 9)):
-- sums of up to 67 integer digits, which no count of Decimal(38, 9) values reaches (it would take
-- 1e38 events). Everything else is as in v1.
--
-- Restartable: each table is emptied and then filled in full from `meter_values` before its view
-- exists, so a crash at any statement and a re-run give the same rows, never a doubled copy
-- (TRUNCATE + INSERT ... SELECT rather than "copy if empty", which a copy cut off halfway would
-- satisfy). Run it while no processor or backfill writes (every role migrates before it starts its
-- processor); a value inserted by another process while the copy runs can be missed or counted
-- twice, and `meterline repair` over its days rebuilds the rollups exactly (docs/runbook.md).
--
-- The v1 views are dropped last, so the old tables stop costing CPU on every insert; the v1
-- tables are kept (nothing reads them) and can be dropped by hand: see sql/README.md.

-- Per-minute rollup, wide sums.
CREATE TABLE IF NOT EXISTS ${DB}.meter_usage_1m_v2
(
    meter_id String,
    subject String,
    group_by Map(String, String),
    window_start DateTime('UTC'),
    value_sum AggregateFunction(sum, Decimal(76, 9)),
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

TRUNCATE TABLE IF EXISTS ${DB}.meter_usage_1m_v2;

INSERT INTO ${DB}.meter_usage_1m_v2 (meter_id, subject, group_by, window_start, value_sum, value_count, value_min, value_max, value_unique, value_latest)
SETTINGS insert_deduplicate = 0
SELECT
    meter_id,
    subject,
    group_by,
    toStartOfMinute(toDateTime(time, 'UTC')) AS window_start,
    sumState(toDecimal256(value, 9)) AS value_sum,
    countState() AS value_count,
    minState(value) AS value_min,
    maxState(value) AS value_max,
    uniqExactState(value_key) AS value_unique,
    argMaxState(value, (time, source, id)) AS value_latest
FROM ${DB}.meter_values
GROUP BY meter_id, subject, group_by, window_start;

CREATE MATERIALIZED VIEW IF NOT EXISTS ${DB}.meter_usage_1m_v2_mv TO ${DB}.meter_usage_1m_v2 AS
SELECT
    meter_id,
    subject,
    group_by,
    toStartOfMinute(toDateTime(time, 'UTC')) AS window_start,
    sumState(toDecimal256(value, 9)) AS value_sum,
    countState() AS value_count,
    minState(value) AS value_min,
    maxState(value) AS value_max,
    uniqExactState(value_key) AS value_unique,
    argMaxState(value, (time, source, id)) AS value_latest
FROM ${DB}.meter_values
GROUP BY meter_id, subject, group_by, window_start;

-- Per-hour rollup, wide sums.
CREATE TABLE IF NOT EXISTS ${DB}.meter_usage_1h_v2
(
    meter_id String,
    subject String,
    group_by Map(String, String),
    window_start DateTime('UTC'),
    value_sum AggregateFunction(sum, Decimal(76, 9)),
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

TRUNCATE TABLE IF EXISTS ${DB}.meter_usage_1h_v2;

INSERT INTO ${DB}.meter_usage_1h_v2 (meter_id, subject, group_by, window_start, value_sum, value_count, value_min, value_max, value_unique, value_latest)
SETTINGS insert_deduplicate = 0
SELECT
    meter_id,
    subject,
    group_by,
    toStartOfHour(toDateTime(time, 'UTC')) AS window_start,
    sumState(toDecimal256(value, 9)) AS value_sum,
    countState() AS value_count,
    minState(value) AS value_min,
    maxState(value) AS value_max,
    uniqExactState(value_key) AS value_unique,
    argMaxState(value, (time, source, id)) AS value_latest
FROM ${DB}.meter_values
GROUP BY meter_id, subject, group_by, window_start;

CREATE MATERIALIZED VIEW IF NOT EXISTS ${DB}.meter_usage_1h_v2_mv TO ${DB}.meter_usage_1h_v2 AS
SELECT
    meter_id,
    subject,
    group_by,
    toStartOfHour(toDateTime(time, 'UTC')) AS window_start,
    sumState(toDecimal256(value, 9)) AS value_sum,
    countState() AS value_count,
    minState(value) AS value_min,
    maxState(value) AS value_max,
    uniqExactState(value_key) AS value_unique,
    argMaxState(value, (time, source, id)) AS value_latest
FROM ${DB}.meter_values
GROUP BY meter_id, subject, group_by, window_start;

-- Per-day (UTC) rollup, wide sums.
CREATE TABLE IF NOT EXISTS ${DB}.meter_usage_1d_v2
(
    meter_id String,
    subject String,
    group_by Map(String, String),
    window_start DateTime('UTC'),
    value_sum AggregateFunction(sum, Decimal(76, 9)),
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

TRUNCATE TABLE IF EXISTS ${DB}.meter_usage_1d_v2;

INSERT INTO ${DB}.meter_usage_1d_v2 (meter_id, subject, group_by, window_start, value_sum, value_count, value_min, value_max, value_unique, value_latest)
SETTINGS insert_deduplicate = 0
SELECT
    meter_id,
    subject,
    group_by,
    toStartOfDay(toDateTime(time, 'UTC')) AS window_start,
    sumState(toDecimal256(value, 9)) AS value_sum,
    countState() AS value_count,
    minState(value) AS value_min,
    maxState(value) AS value_max,
    uniqExactState(value_key) AS value_unique,
    argMaxState(value, (time, source, id)) AS value_latest
FROM ${DB}.meter_values
GROUP BY meter_id, subject, group_by, window_start;

CREATE MATERIALIZED VIEW IF NOT EXISTS ${DB}.meter_usage_1d_v2_mv TO ${DB}.meter_usage_1d_v2 AS
SELECT
    meter_id,
    subject,
    group_by,
    toStartOfDay(toDateTime(time, 'UTC')) AS window_start,
    sumState(toDecimal256(value, 9)) AS value_sum,
    countState() AS value_count,
    minState(value) AS value_min,
    maxState(value) AS value_max,
    uniqExactState(value_key) AS value_unique,
    argMaxState(value, (time, source, id)) AS value_latest
FROM ${DB}.meter_values
GROUP BY meter_id, subject, group_by, window_start;

-- The v1 rollups are no longer fed (nothing reads them); their tables stay until dropped by hand.
DROP VIEW IF EXISTS ${DB}.meter_usage_1m_mv;
DROP VIEW IF EXISTS ${DB}.meter_usage_1h_mv;
DROP VIEW IF EXISTS ${DB}.meter_usage_1d_mv;
