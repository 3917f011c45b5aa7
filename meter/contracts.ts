import { z } from 'zod';
import { compilePath } from '../common/jsonpath.ts';

/**
 * The meter definition as the API accepts it, the catalog stores it and GET /api/v1/meters
 * returns it. Pure (zod and the JSONPath compiler only), so the browser code can import its
 * types (web/src/types.ts) without pulling in server modules.
 */
export const Aggregations = ['SUM', 'COUNT', 'UNIQUE_COUNT', 'MIN', 'MAX', 'AVG', 'LATEST'] as const;
export type Aggregation = (typeof Aggregations)[number];

const jsonPath = z.string().superRefine((p, ctx) => {
  const r = compilePath(p);
  if (!r.ok) ctx.addIssue({ code: z.ZodIssueCode.custom, message: r.reason });
});
const scalar = z.union([z.string(), z.number(), z.boolean()]);

export const MeterInputSchema = z
  .object({
    slug: z.string().regex(/^[a-z0-9][a-z0-9_-]{0,62}$/, 'slug must be 1-63 lower-case letters, digits, "-" or "_", starting with a letter or digit'),
    name: z.string().max(200).optional(),
    description: z.string().max(2000).optional(),
    eventType: z.string().min(1, 'eventType is required').max(256),
    aggregation: z.enum(Aggregations, { errorMap: () => ({ message: `aggregation must be one of ${Aggregations.join(', ')}` }) }),
    valueProperty: jsonPath.optional(),
    groupBy: z
      .record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]{0,62}$/, 'groupBy keys must be identifiers such as model or region'), jsonPath)
      .refine((g) => !('subject' in g), 'subject is a reserved groupBy key')
      .optional(),
    filter: z
      .record(
        jsonPath,
        z
          .object({ eq: scalar.optional(), neq: scalar.optional(), in: z.array(scalar).optional(), exists: z.boolean().optional() })
          .strict()
          .refine((f) => Object.keys(f).length === 1, 'each filter takes exactly one of eq, neq, in, exists'),
      )
      .optional(),
  })
  .strict()
  .superRefine((m, ctx) => {
    if (m.aggregation === 'COUNT' && m.valueProperty) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['valueProperty'], message: 'COUNT meters take no valueProperty' });
    if (m.aggregation !== 'COUNT' && !m.valueProperty) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['valueProperty'], message: `${m.aggregation} meters need a valueProperty, e.g. $.tokens` });
  });

export type MeterInput = z.infer<typeof MeterInputSchema>;

export interface Meter extends MeterInput {
  /** Unique per creation: rows of a deleted and re-created meter never mix. */
  id: string;
  createdAt: string;
}
