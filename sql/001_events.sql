-- Raw events: the audit record and the source for backfills and reconciliation.
-- One row per accepted, deduplicated event. `meter_values` holds what each meter took from
-- the event at processing time; the materialized view below fans it out to meter_values.
-- ${DB} is replaced by the configured database name (a validated identifier).
CREATE TABLE IF NOT EXISTS ${DB}.events_raw
(
    source String,
    id String,
    type LowCardinality(String),
    subject String,
    time DateTime64(3, 'UTC'),
    ingested_at DateTime64(3, 'UTC'),
    received_at DateTime64(3, 'UTC'),
    data String,
    stream_seq UInt64,
    meter_values Array(Tuple(meter_id String, value Decimal(38, 9), value_key String, group_by Map(String, String)))
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(time)
ORDER BY (subject, type, time, source, id)
SETTINGS non_replicated_deduplication_window = 10000;

-- Keys of accepted events, ordered for point look-ups by (source, id): the processor's
-- dedup index falls back to this table for keys it no longer holds in memory.
CREATE TABLE IF NOT EXISTS ${DB}.event_keys
(
    source String,
    id String,
    ingested_at DateTime64(3, 'UTC')
)
ENGINE = MergeTree
ORDER BY (source, id)
TTL toDateTime(ingested_at) + INTERVAL 31 DAY
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS ${DB}.event_keys_mv TO ${DB}.event_keys AS
SELECT source, id, ingested_at FROM ${DB}.events_raw;

-- One row per (event, meter): the exact value each meter counts. Rollups derive from it.
CREATE TABLE IF NOT EXISTS ${DB}.meter_values
(
    meter_id String,
    subject String,
    time DateTime64(3, 'UTC'),
    ingested_at DateTime64(3, 'UTC'),
    source String,
    id String,
    value Decimal(38, 9),
    value_key String,
    group_by Map(String, String)
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(time)
ORDER BY (meter_id, subject, time, source, id)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS ${DB}.meter_values_mv TO ${DB}.meter_values AS
SELECT mv.meter_id AS meter_id, subject, time, ingested_at, source, id, mv.value AS value, mv.value_key AS value_key, mv.group_by AS group_by
FROM ${DB}.events_raw ARRAY JOIN meter_values AS mv;
