import { z } from 'zod';
import { isValidTimeZone } from '../usage/index.ts';
import { CurrencySchema, type Subscription } from './contracts.ts';

/**
 * The billing catalog: customers, plans and subscriptions, stored in NATS KV (the same
 * replicated catalog as meters). Schemas validate with errors naming the field; those of plans
 * and subscriptions are in ./contracts.ts (pure, for the browser's types).
 */
export {
  CancelSchema,
  ChargeSchema,
  MigrateSchema,
  PlanVersionInputSchema,
  SubscriptionTermsSchema,
  DiscountSchema,
  OverridesSchema,
  PlanChangeSchema,
  PlanInputSchema,
  SubscriptionInputSchema,
  type Charge,
  type Discount,
  type Overrides,
  type Phase,
  type Plan,
  type PlanInput,
  type PlanVersion,
  type PlanView,
  type Subscription,
  type SubscriptionInput,
} from './contracts.ts';

export const CustomerInputSchema = z
  .object({
    /** The events' `subject`. */
    key: z.string().min(1).max(256),
    name: z.string().min(1).max(200),
    currency: CurrencySchema,
    timeZone: z.string().default('UTC').refine(isValidTimeZone, 'must be an IANA time zone such as Europe/Berlin'),
    stripeCustomerId: z.string().max(100).optional(),
    metadata: z.record(z.string().max(500)).optional(),
  })
  .strict();
export type CustomerInput = z.infer<typeof CustomerInputSchema>;
export interface Customer extends CustomerInput {
  createdAt: string;
}

/** A phase's plan and pinned version. */
export interface PlanTarget {
  plan: string;
  version: number;
}

/**
 * Ends the subscription's current phase at `at` and starts `target` there (a plan change, or a
 * migration to another version of the same plan); no target: cancels at `at`. Pure.
 */
export function changePlan(sub: Subscription, target: PlanTarget | undefined, atMs: number): Subscription | { error: string } {
  const phases = sub.phases.map((p) => ({ ...p }));
  const idx = phases.findIndex((p) => Date.parse(p.start) <= atMs && (!p.end || atMs < Date.parse(p.end)));
  if (idx < 0) return { error: 'the subscription is not active at that time' };
  if (idx !== phases.length - 1) return { error: 'only the last phase can be changed; a later change is already scheduled' };
  const cur = phases[idx]!;
  if (target && target.plan === cur.plan && target.version === (cur.version ?? 1)) return { error: `the subscription is already on plan "${target.plan}" version ${target.version}` };
  const end = cur.end;
  if (Date.parse(cur.start) === atMs) phases.pop();
  else cur.end = new Date(atMs).toISOString();
  if (target) phases.push({ plan: target.plan, version: target.version, start: new Date(atMs).toISOString(), ...(end ? { end } : {}) });
  return { ...sub, phases };
}
