-- Finalized invoices: immutable once written (inserted once, under the close lease, with the
-- invoice id as deduplication token). Drafts are computed on demand and never stored.
CREATE TABLE IF NOT EXISTS ${DB}.invoices
(
    id String,
    number String,
    customer String,
    subscription_id String,
    currency LowCardinality(String),
    period_start DateTime64(3, 'UTC'),
    period_end DateTime64(3, 'UTC'),
    cutoff DateTime64(3, 'UTC'),
    issued_at DateTime64(3, 'UTC'),
    total Decimal(38, 9),
    total_minor Int64,
    -- The whole invoice as JSON (lines with their breakdowns): what the API serves.
    doc String,
    -- Customer, subscription and plans as they were at finalization: corrections of this
    -- period are priced with them, whatever the catalog says later.
    snapshot String
)
ENGINE = MergeTree
ORDER BY (customer, period_start, id)
SETTINGS non_replicated_deduplication_window = 10000;

-- One row per finalized invoice line, for finance aggregates and audit.
CREATE TABLE IF NOT EXISTS ${DB}.invoice_lines
(
    invoice_id String,
    line_id String,
    customer String,
    currency LowCardinality(String),
    invoice_period_start DateTime64(3, 'UTC'),
    kind LowCardinality(String),
    meter String,
    description String,
    period_start DateTime64(3, 'UTC'),
    period_end DateTime64(3, 'UTC'),
    quantity Decimal(38, 9),
    amount Decimal(38, 9),
    amount_minor Int64
)
ENGINE = MergeTree
ORDER BY (invoice_period_start, customer, invoice_id, line_id)
SETTINGS non_replicated_deduplication_window = 10000;

-- Adjustments: append-only. Credits, usage corrections and prepaid credit grants, each with a
-- reason code, the acting API key and a timestamp. An adjustment is "applied" by the first
-- finalized invoice that carries a line with its id.
CREATE TABLE IF NOT EXISTS ${DB}.adjustments
(
    id String,
    customer String,
    kind LowCardinality(String),
    currency LowCardinality(String),
    amount Decimal(38, 9),
    meter String,
    quantity Decimal(38, 9),
    period_start Nullable(DateTime64(3, 'UTC')),
    expires_at Nullable(DateTime64(3, 'UTC')),
    reason_code LowCardinality(String),
    note String,
    actor String,
    created_at DateTime64(3, 'UTC')
)
ENGINE = MergeTree
ORDER BY (customer, created_at, id);

-- Stripe sync status per invoice; the latest row per invoice wins.
CREATE TABLE IF NOT EXISTS ${DB}.invoice_sync
(
    invoice_id String,
    status LowCardinality(String),
    stripe_invoice_id String,
    attempts UInt32,
    last_error String,
    updated_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY invoice_id;
