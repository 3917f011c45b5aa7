import { z } from 'zod';

/**
 * The usage query's answer as the API returns it (GET /api/v1/meters/{meter}/query and the
 * portal's), and a meter's line of the exactly-once check (GET /api/v1/reconcile). Pure (zod
 * only), so the browser code can import its types. `UsageResult` of ./query.ts must stay equal
 * to it: api/contracts.test.ts checks that at compile time.
 */
export const WindowSizes = ['MINUTE', 'HOUR', 'DAY'] as const;
export type WindowSize = (typeof WindowSizes)[number];

/** The rollups with wide sums (sql/006_rollups_v2.sql), or the per-event values. */
export const Sources = ['meter_usage_1d_v2', 'meter_usage_1h_v2', 'meter_usage_1m_v2', 'meter_values'] as const;
export type Source = (typeof Sources)[number];

export const UsageRowSchema = z.object({
  /** Exact decimal string. */
  value: z.string(),
  windowStart: z.string(),
  windowEnd: z.string(),
  subject: z.string().nullable(),
  groupBy: z.record(z.string(), z.string()),
});
export type UsageRow = z.infer<typeof UsageRowSchema>;

export const UsageResultSchema = z.object({
  from: z.string().optional(),
  to: z.string(),
  windowSize: z.enum(WindowSizes).optional(),
  data: z.array(UsageRowSchema),
  /** Which table answered: a rollup, or the per-event values. */
  source: z.enum(Sources),
});
export type UsageResult = z.infer<typeof UsageResultSchema>;

/** The rollups every reader uses (sql/006_rollups_v2.sql): sum states over Decimal(76, 9). */
export const ROLLUP_TABLES = ['meter_usage_1m_v2', 'meter_usage_1h_v2', 'meter_usage_1d_v2'] as const;
export type RollupTable = (typeof ROLLUP_TABLES)[number];

/** One meter's exactly-once check over a range (./reconcile.ts): GET /api/v1/reconcile, and repair's before and after. */
export interface ReconcileLine {
  meter: string;
  /** Raw events of the meter's event type in the range (whether or not the meter counts them). */
  rawEvents: string;
  /** Per-event values the meter holds (events it counted). */
  values: { count: string; sum: string };
  rollups: Record<RollupTable, { count: string; sum: string }>;
  /** Distinct raw events of the type with no value for this meter (filtered out, or not countable): informational. */
  uncounted: string;
  /** (1) Rows of `events_raw` of the meter's type in the range beyond one per (source, id). */
  rawDuplicates: string;
  /** (2) Rows of `meter_values` of the meter beyond one per (source, id). */
  valueDuplicates: string;
  /** (3) Events whose own `meter_values` array names the meter but that have no row in `meter_values` (a lost write). */
  missingValues: string;
  /** (4) Rows of `meter_values` of the meter with no `events_raw` row. */
  orphanValues: string;
  /** (5) Events of the type, ingested within event_keys' TTL (31 days, less an hour), whose key is not in `event_keys` (the dedup look-up would miss them). */
  missingKeys: string;
  /** False if any of (1)-(5) is non-zero, if (6) a rollup's count or sum differs from `meter_values`, or more events were counted than exist. */
  ok: boolean;
}
