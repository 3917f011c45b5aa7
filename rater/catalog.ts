import { z } from 'zod';
import { PriceSchema } from './pricing/index.ts';
import { Intervals } from './periods.ts';
import { isValidTimeZone } from '../usage/index.ts';

/**
 * The billing catalog: customers, plans and subscriptions, stored in NATS KV (the same
 * replicated catalog as meters). Schemas validate with errors naming the field.
 */
const money = z.string().regex(/^\d+(\.\d+)?$/, 'must be a non-negative decimal string such as "49.00"');
const key = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/, 'must be 1-128 letters, digits, ".", "-" or "_"');
const isoTime = z.string().refine((s) => /^\d{4}-\d{2}-\d{2}T/.test(s) && !Number.isNaN(Date.parse(s)), 'must be an RFC 3339 date-time such as 2026-01-01T00:00:00Z');
const currency = z.string().regex(/^[A-Z]{3}$/, 'must be an ISO 4217 code such as USD');

export const CustomerInputSchema = z
  .object({
    /** The events' `subject`. */
    key: z.string().min(1).max(256),
    name: z.string().min(1).max(200),
    currency,
    timeZone: z.string().default('UTC').refine(isValidTimeZone, 'must be an IANA time zone such as Europe/Berlin'),
    stripeCustomerId: z.string().max(100).optional(),
    metadata: z.record(z.string().max(500)).optional(),
  })
  .strict();
export type CustomerInput = z.infer<typeof CustomerInputSchema>;
export interface Customer extends CustomerInput {
  createdAt: string;
}

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
    currency,
    interval: z.enum(Object.keys(Intervals) as [keyof typeof Intervals, ...(keyof typeof Intervals)[]]),
    baseFee: z.object({ amount: money, timing: z.enum(['advance', 'arrears']) }).strict().optional(),
    charges: z.array(ChargeSchema).default([]),
    /** Minimum spend on usage per full period; a shortfall is billed as a true-up line. */
    minimumCommitment: money.optional(),
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
export interface Plan extends PlanInput {
  createdAt: string;
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

/** Ends the subscription's current phase at `at` and starts `plan` there. Pure. */
export function changePlan(sub: Subscription, plan: string | undefined, atMs: number): Subscription | { error: string } {
  const phases = sub.phases.map((p) => ({ ...p }));
  const idx = phases.findIndex((p) => Date.parse(p.start) <= atMs && (!p.end || atMs < Date.parse(p.end)));
  if (idx < 0) return { error: 'the subscription is not active at that time' };
  if (idx !== phases.length - 1) return { error: 'only the last phase can be changed; a later change is already scheduled' };
  const cur = phases[idx]!;
  if (plan === cur.plan) return { error: `the subscription is already on plan "${plan}"` };
  const end = cur.end;
  if (Date.parse(cur.start) === atMs) phases.pop();
  else cur.end = new Date(atMs).toISOString();
  if (plan) phases.push({ plan, start: new Date(atMs).toISOString(), ...(end ? { end } : {}) });
  return { ...sub, phases };
}
