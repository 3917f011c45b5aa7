-- Anomalies as the scan sees them: one row per detection update; the highest version of an id
-- is its latest state. One open anomaly per customer x meter x kind: re-detection updates it.
-- What people do to an anomaly (acknowledge, resolve) is kept apart in anomaly_actions, so a
-- scan and a person never overwrite each other.
CREATE TABLE IF NOT EXISTS ${DB}.anomalies
(
    id String,
    customer String,
    meter String,
    kind LowCardinality(String),
    severity LowCardinality(String),
    score Float64,
    window_start DateTime64(3, 'UTC'),
    window_end DateTime64(3, 'UTC'),
    observed Float64,
    baseline Float64,
    spread Float64,
    message String,
    -- Kind-specific state, e.g. the threshold percents already alerted.
    detail String,
    detections UInt32,
    first_detected_at DateTime64(3, 'UTC'),
    last_detected_at DateTime64(3, 'UTC'),
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY id;

-- Acknowledgements and resolutions, append-only, with who and when.
CREATE TABLE IF NOT EXISTS ${DB}.anomaly_actions
(
    anomaly_id String,
    action LowCardinality(String),
    actor String,
    note String,
    at DateTime64(3, 'UTC')
)
ENGINE = MergeTree
ORDER BY (anomaly_id, at);

-- Every webhook delivery attempt of an alert.
CREATE TABLE IF NOT EXISTS ${DB}.alert_deliveries
(
    anomaly_id String,
    webhook_id String,
    event String,
    attempt UInt32,
    ok Bool,
    http_status UInt16,
    error String,
    at DateTime64(3, 'UTC')
)
ENGINE = MergeTree
ORDER BY (webhook_id, at);
