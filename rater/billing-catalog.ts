import type { CatalogReplica } from '../common/catalog.ts';
import { AppError } from '../common/errors.ts';
import type { Meter } from '../meter/index.ts';
import type { Customer, Plan, Subscription } from './catalog.ts';
import type { Snapshot } from './invoice-store.ts';
import { billingSnapshot } from './plan-versions.ts';
import { periodAt, type Interval, type Period } from './periods.ts';

/** The reads billing makes of a catalog replica (CatalogReplica satisfies it; unit tests hand in a Map-backed one). */
export type Replica<T> = Pick<CatalogReplica<T>, 'get' | 'list'>;

const ms = (s: string) => Date.parse(s);

/** The billing catalog as billing reads it: customers, plans, subscriptions, meters, and the periods they give. */
export class BillingCatalog {
  constructor(private readonly replicas: CatalogReplicas) {}

  /**
   * This catalog with `draft`'s plans and subscriptions in place of (or besides) the stored
   * ones: what a preview computes with. Nothing is written; the replicas are read as they are.
   */
  withDraft(draft: { plans?: Plan[]; subscriptions?: Subscription[] }): BillingCatalog {
    return new BillingCatalog({
      ...this.replicas,
      plans: overlay(this.replicas.plans, draft.plans ?? [], (p) => p.key),
      subscriptions: overlay(this.replicas.subscriptions, draft.subscriptions ?? [], (s) => s.id),
    });
  }

  subscriptions(): Subscription[] {
    return this.replicas.subscriptions.list();
  }

  customer(key: string): Customer {
    const c = this.replicas.customers.get(key);
    if (!c) throw new AppError('NOT_FOUND', `no customer "${key}"`);
    return c;
  }

  meterFor(slug: string): Meter {
    const m = this.replicas.meters.get(slug);
    if (!m) throw new AppError('METER_NOT_FOUND', `a plan charge refers to meter "${slug}", which does not exist`);
    return m;
  }

  plansMap(): Record<string, Plan> {
    return Object.fromEntries(this.replicas.plans.list().map((p) => [p.key, p]));
  }

  /** The plans `sub` uses, by key. */
  planSubset(sub: Subscription): Record<string, Plan> {
    const all = this.plansMap();
    const out: Record<string, Plan> = {};
    for (const p of sub.phases) {
      const plan = all[p.plan];
      if (!plan) throw new AppError('NOT_FOUND', `subscription ${sub.id} uses plan "${p.plan}", which does not exist`);
      out[p.plan] = plan;
    }
    return out;
  }

  /** What an invoice of `sub` is computed from: each phase with its pinned plan version (see `billingSnapshot`). */
  snapshot(sub: Subscription): Snapshot {
    const resolved = billingSnapshot(sub, this.planSubset(sub), (what) => new AppError('NOT_FOUND', what));
    return { ...resolved, customer: this.customer(sub.customer) };
  }

  private interval(sub: Subscription, plans: Record<string, Plan>): Interval {
    const first = plans[sub.phases[0]!.plan];
    if (!first) throw new AppError('NOT_FOUND', `plan "${sub.phases[0]!.plan}" does not exist`);
    return first.interval;
  }

  /** The billing period of `sub` containing `atMs`. */
  periodOf(sub: Subscription, atMs: number, plans = this.plansMap(), customer = this.customer(sub.customer)): Period {
    return periodAt(ms(sub.anchor), this.interval(sub, plans), atMs, customer.timeZone);
  }

  /** The current period of the customer's active subscription, if any. */
  periodForCustomer(customer: string, nowMs: number): Period | undefined {
    const sub = this.subscriptions().find((s) => s.customer === customer && ms(s.phases[0]!.start) <= nowMs && subscriptionEnd(s) > nowMs);
    return sub ? this.periodOf(sub, nowMs) : undefined;
  }
}

export interface CatalogReplicas {
  meters: Replica<Meter>;
  customers: Replica<Customer>;
  plans: Replica<Plan>;
  subscriptions: Replica<Subscription>;
}

/** `base` with `extra` replacing the entries of the same key (and added where new). */
function overlay<T>(base: Replica<T>, extra: T[], keyOf: (v: T) => string): Replica<T> {
  if (extra.length === 0) return base;
  const byKey = new Map(extra.map((v) => [keyOf(v), v]));
  return {
    get: (k) => byKey.get(k) ?? base.get(k),
    list: () => [...base.list().filter((v) => !byKey.has(keyOf(v))), ...byKey.values()],
  };
}

/** When `sub` ends (its last phase's end), or never. */
export function subscriptionEnd(sub: Subscription): number {
  const last = sub.phases.at(-1);
  return last?.end ? ms(last.end) : Number.MAX_SAFE_INTEGER;
}
