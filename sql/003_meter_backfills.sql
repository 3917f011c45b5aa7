-- Meters whose backfill from events_raw has completed (see processor/backfill.ts).
CREATE TABLE IF NOT EXISTS ${DB}.meter_backfills
(
    meter_id String,
    inserted UInt64,
    skipped UInt64,
    completed_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = MergeTree
ORDER BY meter_id;
