import type { CatalogReplica } from '../common/catalog.ts';
import { AppError } from '../common/errors.ts';
import type { Meter } from '../meter/index.ts';
import type { Customer, Plan, Subscription } from './catalog.ts';
import { periodAt, type Interval, type Period } from './periods.ts';

/** The reads billing makes of a catalog replica (CatalogReplica satisfies it; unit tests hand in a Map-backed one). */
export type Replica<T> = Pick<CatalogReplica<T>, 'get' | 'list'>;

const ms = (s: string) => Date.parse(s);

/** The billing catalog as billing reads it: customers, plans, subscriptions, meters, and the periods they give. */
export class BillingCatalog {
  constructor(
    private readonly replicas: {
      meters: Replica<Meter>;
      customers: Replica<Customer>;
      plans: Replica<Plan>;
      subscriptions: Replica<Subscription>;
    },
  ) {}

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

/** When `sub` ends (its last phase's end), or never. */
export function subscriptionEnd(sub: Subscription): number {
  const last = sub.phases.at(-1);
  return last?.end ? ms(last.end) : Number.MAX_SAFE_INTEGER;
}
