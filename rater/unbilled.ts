import { Decimal } from '../common/decimal.ts';
import type { Plan, Subscription } from './contracts.ts';
import type { Period } from './periods.ts';
import { isPricingError, rate, roundMoney, type Price } from './pricing/index.ts';

/**
 * Unbilled usage (revenue leakage), pure: which parts of a month no invoice bills for a subject
 * and meter, and what that usage is worth at list price. The shell (api/routes/unbilled.ts)
 * reads the quantities through the UsageStore; docs/unbilled.md explains the rules.
 *
 * Each unit of usage gets exactly one reason, the first that applies:
 * 1. `meter_not_priced`: no plan in the catalog charges the meter (nobody can be billed for it);
 * 2. `unknown_subject`: the events' subject is no customer's key;
 * 3. `no_subscription`: the customer has no subscription phase covering that time (before the
 *    start, after the end or cancel, between two subscriptions);
 * 4. `meter_not_in_plan`: a subscription covers that time but none of its plans then charges the meter.
 */
export const UnbilledReasons = ['meter_not_priced', 'unknown_subject', 'no_subscription', 'meter_not_in_plan'] as const;
export type UnbilledReason = (typeof UnbilledReasons)[number];

/** What the classification and the list price read of the billing catalog. */
export interface UnbilledCatalog {
  /** Customers by key (= the events' subject). */
  customers: ReadonlyMap<string, { key: string; currency: string }>;
  plans: readonly Plan[];
  subscriptions: readonly Subscription[];
}

/** The parts of the month in which a subject's usage of a meter is unbilled, for one reason. */
export interface ReasonRanges {
  reason: UnbilledReason;
  /** Disjoint, ascending, half-open. */
  ranges: Period[];
}

/** Sorted, merged (touching ranges join), empty ones dropped. */
export function unionRanges(ranges: readonly Period[]): Period[] {
  const out: Period[] = [];
  for (const r of [...ranges].filter((x) => x.end > x.start).sort((a, b) => a.start - b.start)) {
    const last = out.at(-1);
    if (last && r.start <= last.end) last.end = Math.max(last.end, r.end);
    else out.push({ start: r.start, end: r.end });
  }
  return out;
}

/** `a` less `b`: the parts of `a` no range of `b` covers. */
export function subtractRanges(a: readonly Period[], b: readonly Period[]): Period[] {
  let rest = unionRanges(a);
  for (const cut of unionRanges(b)) {
    rest = rest.flatMap((r) => {
      if (cut.end <= r.start || cut.start >= r.end) return [r];
      return [{ start: r.start, end: cut.start }, { start: cut.end, end: r.end }].filter((x) => x.end > x.start);
    });
  }
  return rest;
}

const clip = (r: Period, month: Period): Period => ({ start: Math.max(r.start, month.start), end: Math.min(r.end, month.end) });

/** What a plan version defines that the report reads. */
type Definition = Pick<Plan, 'key' | 'currency' | 'charges'> & { version?: number };

/**
 * A plan's definitions: each of its versions when it has them (rater/plan-versions.ts: a phase
 * pins one), else the plan itself. Read structurally, so plans stored before versions work too.
 */
function definitionsOf(plan: Plan): Definition[] {
  const versions = (plan as { versions?: Definition[] }).versions;
  return versions?.length ? versions : [plan];
}

/** The definition a phase is billed with: its pinned version (absent: 1), else the plan as stored. */
function phaseDefinition(plan: Plan, version: number | undefined): Definition {
  return definitionsOf(plan).find((v) => (v.version ?? 1) === (version ?? 1)) ?? plan;
}

/** True if some plan of the catalog (any of its versions) charges the meter (slug). */
export function meterCharged(meter: string, plans: readonly Plan[]): boolean {
  return plans.some((p) => definitionsOf(p).some((d) => d.charges.some((c) => c.meter === meter)));
}

/** Every phase of the customer's subscriptions as a range with its plan, oldest first. */
function phasesOf(customer: string, subs: readonly Subscription[]): (Period & { plan: string; version: number | undefined; sub: Subscription })[] {
  return subs
    .filter((s) => s.customer === customer)
    .flatMap((s) => s.phases.map((p) => ({ start: Date.parse(p.start), end: p.end ? Date.parse(p.end) : Number.MAX_SAFE_INTEGER, plan: p.plan, version: (p as { version?: number }).version, sub: s })))
    .sort((x, y) => x.start - y.start);
}

/**
 * The parts of `month` in which no invoice bills `subject`'s usage of `meter`, per reason (see
 * the header for the order); empty when every part is billed. A phase whose plan is missing from
 * the catalog charges nothing.
 */
export function unbilledRanges(subject: string, meter: string, month: Period, catalog: UnbilledCatalog): ReasonRanges[] {
  if (!meterCharged(meter, catalog.plans)) return [{ reason: 'meter_not_priced', ranges: [month] }];
  if (!catalog.customers.has(subject)) return [{ reason: 'unknown_subject', ranges: [month] }];
  const plans = new Map(catalog.plans.map((p) => [p.key, p]));
  const phases = phasesOf(subject, catalog.subscriptions).map((p) => ({ ...clip(p, month), plan: plans.get(p.plan), version: p.version }));
  const covered = unionRanges(phases);
  const charged = unionRanges(phases.filter((p) => p.plan && phaseDefinition(p.plan, p.version).charges.some((c) => c.meter === meter)));
  const out: ReasonRanges[] = [
    { reason: 'no_subscription', ranges: subtractRanges([month], covered) },
    { reason: 'meter_not_in_plan', ranges: subtractRanges(covered, charged) },
  ];
  return out.filter((r) => r.ranges.length > 0);
}

/** Where a row's list price comes from. */
export const PriceSources = ['subscription_plan', 'catalog_lowest'] as const;
export type PriceSource = (typeof PriceSources)[number];

/** A row's value at list price; every field null when nothing prices it (`note` says why). */
export interface ListPricing {
  /** Rounded once to the currency's minor unit (half-up), as an invoice line is. */
  amount: string | null;
  currency: string | null;
  plan: string | null;
  charge: string | null;
  priceSource: PriceSource | null;
  note?: string;
}

interface Candidate {
  plan: Definition;
  chargeKey: string;
  price: Price;
}

/** Prices that need per-event values or usage per dimension value, which a quantity cannot price. */
function needsMoreThanQuantity(price: Price): boolean {
  if (price.model === 'dimensional') return true;
  if (price.model !== 'percentage') return false;
  return price.fixedFeePerEvent !== undefined || price.freeEvents !== undefined || price.perEventMin !== undefined || price.perEventMax !== undefined;
}

/** The plan (the version its phase pins) of the customer's latest phase starting before the month's end (else its earliest phase), and its price of `meter`. */
function subscriptionCandidate(customer: string, meter: string, month: Period, catalog: UnbilledCatalog): Candidate | undefined {
  const phases = phasesOf(customer, catalog.subscriptions);
  const phase = phases.filter((p) => p.start < month.end).at(-1) ?? phases[0];
  if (!phase) return undefined;
  const stored = catalog.plans.find((p) => p.key === phase.plan);
  const plan = stored && phaseDefinition(stored, phase.version);
  const charge = plan?.charges.find((c) => c.meter === meter);
  if (!plan || !charge) return undefined;
  return { plan, chargeKey: charge.key, price: phase.sub.overrides?.charges?.[charge.key] ?? charge.price };
}

/**
 * The catalog's cheapest price of `meter` at `quantity`: the plans that charge it (in the
 * customer's currency when one of them is; an unknown subject has none; of each plan its latest
 * version charging the meter), in the currency most of
 * them use (ties: the code's alphabetical order), the lowest amount (ties: the plan key).
 */
function lowestCandidate(meter: string, quantity: string, currency: string | undefined, plans: readonly Plan[]): { candidate: Candidate; amount: Decimal } | undefined {
  const all = plans.flatMap((stored) => {
    const plan = [...definitionsOf(stored)].reverse().find((d) => d.charges.some((c) => c.meter === meter));
    if (!plan) return [];
    return plan.charges.filter((c) => c.meter === meter).flatMap((c) => {
      const amount = tryRate(c.price, quantity);
      return amount ? [{ candidate: { plan, chargeKey: c.key, price: c.price }, amount }] : [];
    });
  });
  const own = all.filter((c) => c.candidate.plan.currency === currency);
  const pool = own.length > 0 ? own : all;
  const counts = new Map<string, number>();
  for (const c of pool) counts.set(c.candidate.plan.currency, (counts.get(c.candidate.plan.currency) ?? 0) + 1);
  const chosen = [...counts].sort(([a, n], [b, m]) => m - n || a.localeCompare(b))[0]?.[0];
  return pool
    .filter((c) => c.candidate.plan.currency === chosen)
    .sort((x, y) => x.amount.comparedTo(y.amount) || x.candidate.plan.key.localeCompare(y.candidate.plan.key))[0];
}

/** The exact amount of `quantity` at `price`, or undefined when the price cannot rate a bare quantity (the rater says so with a PricingError). */
function tryRate(price: Price, quantity: string): Decimal | undefined {
  if (needsMoreThanQuantity(price)) return undefined;
  try {
    return new Decimal(rate(price, { quantity }).amount);
  } catch (err) {
    if (isPricingError(err)) return undefined;
    throw err;
  }
}

const NO_PRICE: ListPricing = { amount: null, currency: null, plan: null, charge: null, priceSource: null };

/**
 * `quantity` of `meter` used by `subject` in `month`, at list price: the price of the meter's
 * charge in the customer's plan (its latest phase starting before the month's end, with the
 * subscription's negotiated override), else the catalog's lowest (`lowestCandidate`: a
 * conservative "at least this much"). Rated as one period's quantity with the rater's `rate`.
 */
export function listPrice(subject: string, meter: string, quantity: string, month: Period, catalog: UnbilledCatalog): ListPricing {
  if (!meterCharged(meter, catalog.plans)) return { ...NO_PRICE, note: 'no plan charges this meter' };
  const customer = catalog.customers.get(subject);
  const own = customer ? subscriptionCandidate(customer.key, meter, month, catalog) : undefined;
  const ownAmount = own && tryRate(own.price, quantity);
  if (own && ownAmount) {
    return { amount: roundMoney(ownAmount.toFixed(), own.plan.currency), currency: own.plan.currency, plan: own.plan.key, charge: own.chargeKey, priceSource: 'subscription_plan' };
  }
  const low = lowestCandidate(meter, quantity, customer?.currency, catalog.plans);
  if (!low) return { ...NO_PRICE, note: 'every price of this meter needs per-event values or usage per dimension value (percentage with per-event terms, dimensional): not priced here' };
  const { candidate } = low;
  return { amount: roundMoney(low.amount.toFixed(), candidate.plan.currency), currency: candidate.plan.currency, plan: candidate.plan.key, charge: candidate.chargeKey, priceSource: 'catalog_lowest' };
}

/** One row of unbilled usage: a reason, a subject and a meter, over the month. */
export interface UnbilledRow extends ListPricing {
  reason: UnbilledReason;
  subject: string;
  /** The customer's key when the subject is one, else null. */
  customer: string | null;
  meter: string;
  aggregation: string;
  /** Exact decimal string: the meter's value over the parts of the month with this reason. */
  quantity: string;
  /** The parts of the month this row covers, ISO instants. */
  ranges: { start: string; end: string }[];
}

/** The sum of one reason's priced rows in one currency (`currency` null: the rows without a price, `amount` null). */
export interface UnbilledTotal {
  reason: UnbilledReason;
  currency: string | null;
  amount: string | null;
  rows: number;
}

/** Totals per reason and currency, in reason order, then currency (unpriced last). */
export function unbilledTotals(rows: readonly UnbilledRow[]): UnbilledTotal[] {
  const out: UnbilledTotal[] = [];
  for (const reason of UnbilledReasons) {
    const mine = rows.filter((r) => r.reason === reason);
    const currencies = [...new Set(mine.map((r) => r.currency))].sort((a, b) => (a === null ? 1 : b === null ? -1 : a.localeCompare(b)));
    for (const currency of currencies) {
      const group = mine.filter((r) => r.currency === currency);
      // The sum of amounts already rounded per row (as an invoice's total is): exact, written with the currency's decimals.
      const amount = currency === null ? null : roundMoney(group.reduce((acc, r) => acc.plus(r.amount ?? 0), new Decimal(0)).toFixed(), currency);
      out.push({ reason, currency, amount, rows: group.length });
    }
  }
  return out;
}

/** The priced rows' sum per currency over every reason, in currency order. */
export function unbilledCurrencyTotals(rows: readonly UnbilledRow[]): { currency: string; amount: string; rows: number }[] {
  const currencies = [...new Set(rows.flatMap((r) => (r.currency === null ? [] : [r.currency])))].sort();
  return currencies.map((currency) => {
    const group = rows.filter((r) => r.currency === currency);
    return { currency, amount: roundMoney(group.reduce((acc, r) => acc.plus(r.amount ?? 0), new Decimal(0)).toFixed(), currency), rows: group.length };
  });
}

/** Rows in a stable order: reason, subject, meter. */
export function sortUnbilledRows(rows: UnbilledRow[]): UnbilledRow[] {
  const order = (r: UnbilledReason) => UnbilledReasons.indexOf(r);
  return rows.sort((a, b) => order(a.reason) - order(b.reason) || a.subject.localeCompare(b.subject) || a.meter.localeCompare(b.meter));
}
