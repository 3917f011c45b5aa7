import { z } from 'zod';

/**
 * The usage query's answer as the API returns it (GET /api/v1/meters/{meter}/query and the
 * portal's). Pure (zod only), so the browser code can import its types. `UsageResult` of
 * ./query.ts must stay equal to it: api/contracts.test.ts checks that at compile time.
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
