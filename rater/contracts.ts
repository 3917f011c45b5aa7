import { z } from 'zod';
import { PriceSchema } from './pricing/schema.ts';
import type { Invoice } from './invoice-types.ts';

/**
 * The rater's shapes the API returns as they are: plans and subscriptions of the billing catalog
 * (zod schemas validating with errors naming the field), finance aggregates and Stripe
 * reconciliation rows. Pure: zod and the price schema only, so the browser code can import its
 * types. ./catalog.ts re-exports the catalog's; the customer, whose time zone is checked against
 * usage/'s list of zones, stays there.
 */
const money = z.string().regex(/^\d+(\.\d+)?$/, 'must be a non-negative decimal string such as "49.00"');
const key = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/, 'must be 1-128 letters, digits, ".", "-" or "_"');
const isoTime = z.string().refine((s) => /^\d{4}-\d{2}-\d{2}T/.test(s) && !Number.isNaN(Date.parse(s)), 'must be an RFC 3339 date-time such as 2026-01-01T00:00:00Z');
export const CurrencySchema = z.string().regex(/^[A-Z]{3}$/, 'must be an ISO 4217 code such as USD');

/** A plan's billing interval and its length in months (./periods.ts cuts periods with it). */
export const Intervals = { month: 1, quarter: 3, year: 12 } as const;
export type Interval = keyof typeof Intervals;
export const PlanIntervals = Object.keys(Intervals) as [Interval, ...Interval[]];

export const DiscountSchema = z
  .object({
    description: z.string().max(200).optional(),
    type: z.enum(['percent', 'amount']),
    /** Percent (0-100) or an amount in the currency. */
    value: money,
    /** A charge key: the discount applies to that usage line; absent: to the invoice subtotal. */
    charge: z.string().optional(),
  })
  .strict()
  .refine((d) => d.type !== 'percent' || Number(d.value) <= 100, { message: 'a percent discount is at most 100', path: ['value'] });
export type Discount = z.infer<typeof DiscountSchema>;

export const ChargeSchema = z
  .object({
    key,
    meter: z.string().min(1),
    description: z.string().max(200).optional(),
    price: PriceSchema,
  })
  .strict();
export type Charge = z.infer<typeof ChargeSchema>;

export const PlanInputSchema = z
  .object({
    key,
    name: z.string().min(1).max(200),
    currency: CurrencySchema,
    interval: z.enum(PlanIntervals),
    baseFee: z.object({ amount: money, timing: z.enum(['advance', 'arrears']) }).strict().optional(),
    charges: z.array(ChargeSchema).default([]),
    /** Minimum spend on usage per full period; a shortfall is billed as a true-up line. */
    minimumCommitment: money.optional(),
    /** How base fees are prorated for part of a period: to the second (default, as Stripe) or by whole days in the customer's zone (as Lago). */
    proration: z.enum(['second', 'day']).optional(),
  })
  .strict()
  .superRefine((p, ctx) => {
    const seen = new Set<string>();
    p.charges.forEach((c, i) => {
      if (seen.has(c.key)) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['charges', i, 'key'], message: `duplicate charge key "${c.key}"` });
      seen.add(c.key);
    });
  });
export type PlanInput = z.infer<typeof PlanInputSchema>;

/** One version of a plan: its definition and the date from which new subscriptions get it. */
export interface PlanVersion extends PlanInput {
  /** 1, 2, ...: subscription phases pin it (`Phase.version`). */
  version: number;
  /** Subscriptions (and plan changes) starting at or after it get this version, until the next one's. */
  effectiveFrom: string;
  createdAt: string;
}

/**
 * A plan as stored: its latest version's definition at the top (what readers that know no
 * versions see), and every version in `versions`. A plan stored before versions existed has no
 * `version`/`versions`: it is version 1 (see ./plan-versions.ts `versionsOf`).
 */
export interface Plan extends PlanInput {
  createdAt: string;
  /** The latest version's number; absent: 1. */
  version?: number;
  /** The latest version's effectiveFrom; absent: the plan's createdAt. */
  effectiveFrom?: string;
  /** Every version, oldest first; absent: one version, the plan itself. */
  versions?: PlanVersion[];
}

/** PUT /api/v1/plans/{key}: the new definition (key from the path) and when it takes effect. */
export const PlanVersionInputSchema = z
  .object({
    effectiveFrom: isoTime,
    /** Optimistic concurrency: refused (409) if the plan's latest version is not this one. */
    expectedVersion: z.number().int().min(1).optional(),
  })
  .passthrough();

/** How GET /api/v1/plans and /plans/{key} show a plan: the version in force now, flattened, and a summary of every version. */
export interface PlanView extends PlanInput {
  createdAt: string;
  /** The version in force now (new subscriptions starting now get it). */
  version: number;
  effectiveFrom: string;
  latestVersion: number;
  versions: { version: number; effectiveFrom: string; createdAt: string; name: string }[];
}

export const OverridesSchema = z
  .object({
    /** Negotiated prices per charge key; they win over the plan's. */
    charges: z.record(PriceSchema).optional(),
    baseFee: money.optional(),
    minimumCommitment: money.optional(),
  })
  .strict();
export type Overrides = z.infer<typeof OverridesSchema>;

export interface Phase {
  plan: string;
  /** The plan version billed in this phase; absent (stored before versions): 1. */
  version?: number;
  start: string;
  /** Absent: open-ended. */
  end?: string;
}

export const SubscriptionInputSchema = z
  .object({
    id: key.optional(),
    customer: z.string().min(1),
    plan: z.string().min(1),
    start: isoTime,
    /** First period boundary; default: the start. Periods repeat from it in the customer's zone. */
    anchor: isoTime.optional(),
    end: isoTime.optional(),
    overrides: OverridesSchema.optional(),
    discounts: z.array(DiscountSchema).optional(),
  })
  .strict()
  .refine((s) => !s.end || Date.parse(s.end) > Date.parse(s.start), { message: 'end must be after start', path: ['end'] });
export type SubscriptionInput = z.infer<typeof SubscriptionInputSchema>;

/** A subscription as stored and as GET /api/v1/subscriptions returns it. */
export interface Subscription {
  id: string;
  customer: string;
  anchor: string;
  /** The plans in force, in order; consecutive, non-overlapping. */
  phases: Phase[];
  overrides?: Overrides;
  discounts?: Discount[];
  createdAt: string;
}

export const PlanChangeSchema = z.object({ plan: z.string().min(1), effectiveAt: isoTime }).strict();
export const CancelSchema = z.object({ effectiveAt: isoTime }).strict();
export const MigrateSchema = z.object({ version: z.number().int().min(1), effectiveAt: isoTime }).strict();
/** PUT /api/v1/subscriptions/{id}/terms: overrides and discounts, replaced as a whole. */
export const SubscriptionTermsSchema = z
  .object({
    overrides: OverridesSchema.optional(),
    discounts: z.array(DiscountSchema).optional(),
  })
  .strict();

/**
 * POST /api/v1/invoices/preview: a change not saved yet, whose effect on the current period's
 * invoice is computed (see ./preview.ts). `plan-version`: the subscriptions on the plan (or the
 * one named) as if migrated to the draft version at `effectiveAt` (default: the current period's
 * start, so the whole period is on it).
 */
export const PreviewDraftSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('plan-version'), plan: PlanInputSchema, effectiveFrom: isoTime, subscription: z.string().min(1).optional(), effectiveAt: isoTime.optional() }).strict(),
  z.object({ kind: z.literal('migrate'), subscription: z.string().min(1), version: z.number().int().min(1), effectiveAt: isoTime }).strict(),
  z.object({ kind: z.literal('change-plan'), subscription: z.string().min(1), plan: z.string().min(1), effectiveAt: isoTime }).strict(),
  z.object({ kind: z.literal('cancel'), subscription: z.string().min(1), effectiveAt: isoTime }).strict(),
  z.object({ kind: z.literal('terms'), subscription: z.string().min(1), overrides: OverridesSchema.optional(), discounts: z.array(DiscountSchema).optional() }).strict(),
]);
export type PreviewDraft = z.infer<typeof PreviewDraftSchema>;

/** One subscription's current-period invoice now, and with the draft applied. */
export interface InvoicePreviewItem {
  subscription: string;
  customer: string;
  periodStart: string;
  periodEnd: string;
  before: Invoice;
  after: Invoice;
  /** after.total - before.total. */
  difference: string;
}

/** POST /api/v1/invoices/preview. */
export interface InvoicePreviews {
  /** The cutoff: usage ingested by then is counted. */
  asOf: string;
  items: InvoicePreviewItem[];
}

/**
 * Invoice-ready totals of one customer, currency, meter and line kind (see `InvoiceStore.aggregates`;
 * GET /api/v1/billing/aggregates). Sums and the line count are strings, as ClickHouse returns them.
 */
export interface AggregateRow {
  customer: string;
  currency: string;
  meter: string;
  kind: string;
  quantity: string;
  amount: string;
  amount_minor: string;
  lines: string;
}

export const ReconcileProblems = ['total_differs', 'currency_differs', 'missing_in_stripe', 'not_this_invoice', 'voided_in_stripe'] as const;
export type ReconcileProblem = (typeof ReconcileProblems)[number];

/** A finalized invoice that Stripe does not agree with (GET /api/v1/billing/stripe/reconcile). */
export interface ReconcileRow {
  meterlineInvoiceId: string;
  stripeInvoiceId: string;
  problems: ReconcileProblem[];
  /** Meterline's currency, lower-case like Stripe's. */
  currency: string;
  stripeCurrency: string | null;
  meterlineTotalMinor: string;
  stripeTotalMinor: string | null;
  /** Stripe minus Meterline, in minor units; null when the currencies differ or Stripe has no such invoice. */
  differenceMinor: string | null;
  /** Stripe's status (draft, open, paid, uncollectible, void); null when missing. */
  status: string | null;
}
