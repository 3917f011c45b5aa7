import { z } from 'zod';

/**
 * The usage query's answer as the API returns it (GET /api/v1/meters/{meter}/query and the
 * portal's). Pure (zod only), so the browser code can import its types. `UsageResult` of
 * ./query.ts must stay equal to it: api/contracts.test.ts checks that at compile time.
 */
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
  windowSize: z.enum(['MINUTE', 'HOUR', 'DAY']).optional(),
  data: z.array(UsageRowSchema),
  /** Which table answered: a rollup, or the per-event values. */
  source: z.enum(['meter_usage_1d_v2', 'meter_usage_1h_v2', 'meter_usage_1m_v2', 'meter_values']),
});
export type UsageResult = z.infer<typeof UsageResultSchema>;
