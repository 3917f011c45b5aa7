import { AsyncLocalStorage } from 'node:async_hooks';
import { createHash, randomUUID } from 'node:crypto';
import { Decimal } from '../common/decimal.ts';
import type { KV } from '@nats-io/kv';
import type { CatalogReplica } from '../common/catalog.ts';
import type { Store } from '../common/clickhouse.ts';
import { AppError } from '../common/errors.ts';
import type { Leases } from '../common/lease.ts';
import type { Logger } from '../common/logger.ts';
import type { Meter } from '../meter/index.ts';
import { averageOf, RAW_AGG, tzOffsetMinutes } from '../usage/index.ts';
import type { Customer, Plan, Subscription } from './catalog.ts';
import { buildInvoice, usageAmounts, usageGroups, type CorrectionLine, type CreditGrant, type OneTimeAdjustment, type RoundingMode, type UsageGroup } from './invoice-builder.ts';
import type { Invoice } from './invoice-types.ts';
import { periodAt, type Interval, type Period } from './periods.ts';
import type { Price, RateInput } from './pricing/types.ts';

export interface BillingDeps {
  store: Store;
  meters: CatalogReplica<Meter>;
  customers: CatalogReplica<Customer>;
  plans: CatalogReplica<Plan>;
  subscriptions: CatalogReplica<Subscription>;
  /** The catalog bucket, for the invoice number counter. */
  kv: KV;
  leases: Leases;
  logger: Logger;
  options: { graceMs: number; rounding: RoundingMode; numberPrefix: string; safetyMs?: number };
}

/** Default extra time after a period's cutoff before it is finalized: rows stamped just before the cutoff are visible by then. */
export const CLOSE_SAFETY_MS = 60_000;
/** How many earlier periods a close looks back at for late usage (corrections). */
const CORRECTION_LOOKBACK = 12;

export interface Adjustment {
  id: string;
  customer: string;
  kind: 'credit' | 'charge' | 'usage_correction' | 'credit_grant';
  currency: string;
  amount: string;
  meter: string;
  quantity: string;
  periodStart: string | null;
  expiresAt: string | null;
  reasonCode: string;
  note: string;
  actor: string;
  createdAt: string;
}

/** What an invoice carries besides fees and usage (see `Billing.oneTimeItems`). */
interface OneTimeItems {
  adjustments: Adjustment[];
  oneTime: OneTimeAdjustment[];
  corrections: CorrectionLine[];
  credits: CreditGrant[];
}

interface Snapshot {
  subscription: Subscription;
  plans: Record<string, Plan>;
  customer: Customer;
}

interface StoredInvoice {
  invoice: Invoice;
  snapshot: Snapshot;
  subscriptionId: string;
}

const iso = (ms: number) => new Date(ms).toISOString();
const ms = (s: string) => Date.parse(s);

/** The id of the invoice of a subscription's period: the same close always gives the same id. */
export function invoiceId(subscriptionId: string, periodStartMs: number): string {
  return `inv_${createHash('sha256').update(`${subscriptionId}\u0000${periodStartMs}`).digest('hex').slice(0, 24)}`;
}

/**
 * State preloaded for a close run over many subscriptions, so the run costs one query per
 * table rather than several per subscription: finalized invoices and adjustments by customer,
 * usage per (meter, ranges, cutoff) for every customer at once, and the invoices finalized in
 * this run, inserted and numbered in blocks.
 */
interface CloseCache {
  finalized: Map<string, StoredInvoice[]>;
  adjustments: Map<string, Adjustment[]>;
  usage: Map<string, Promise<Map<string, { q: string; n: string }>>>;
  /** Customers with rows in a period ingested in (from, to], per (period, from, to): see `changedSince`. */
  changed: Map<string, Promise<Set<string>>>;
  pending: { invoice: Invoice; snapshot: Snapshot; subscriptionId: string }[];
}

/** Invoice-ready totals of one customer, currency, meter and line kind (see `Billing.aggregates`). */
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

/** Invoices inserted (and numbered) together during a close run. */
const STORE_BLOCK = 500;

/**
 * Billing close and everything around it, on top of the pure invoice builder. Usage is read
 * from `meter_values` with `ingested_at <= cutoff`, so a period's invoice is reproducible: its
 * cutoff is the period end plus the grace period, and closing it again gives the same lines.
 * Events ingested after a period was finalized are priced on the next invoice as corrections
 * (the period priced with them, less the period as last billed).
 */
export class Billing {
  /**
   * The close cache of the run in progress, scoped to that run's async calls: API requests
   * served meanwhile by the same instance (drafts, projections, adjustments) never see it.
   */
  private readonly closeRun = new AsyncLocalStorage<CloseCache>();

  constructor(private readonly deps: BillingDeps) {}

  /** Quantities and amounts of the finalized invoices whose period starts in [fromMs, toMs) (UTC), per customer, currency, meter and line kind. */
  async aggregates(fromMs: number, toMs: number): Promise<AggregateRow[]> {
    const rs = await this.deps.store.ch.query({
      query: `SELECT customer, currency, meter, kind, toString(sum(quantity)) AS quantity, toString(sum(amount)) AS amount, toString(sum(amount_minor)) AS amount_minor, count() AS lines
              FROM ${this.db}.invoice_lines
              WHERE invoice_period_start >= fromUnixTimestamp64Milli({from:Int64}, 'UTC') AND invoice_period_start < fromUnixTimestamp64Milli({to:Int64}, 'UTC')
              GROUP BY customer, currency, meter, kind ORDER BY customer, kind, meter`,
      query_params: { from: fromMs, to: toMs },
      format: 'JSONEachRow',
    });
    return rs.json<AggregateRow>();
  }

  private get cache(): CloseCache | undefined {
    return this.closeRun.getStore();
  }

  /** Runs `fn` with the close cache (see CloseCache); pending invoices are stored before it returns. */
  private async withCache<T>(fn: () => Promise<T>): Promise<T> {
    if (this.cache) return fn();
    const group = <V extends { customer: string }>(rows: V[]) => {
      const m = new Map<string, V[]>();
      for (const r of rows) (m.get(r.customer) ?? m.set(r.customer, []).get(r.customer)!).push(r);
      return m;
    };
    const finalized = new Map<string, StoredInvoice[]>();
    for (const s of await this.finalized()) (finalized.get(s.invoice.customer) ?? finalized.set(s.invoice.customer, []).get(s.invoice.customer)!).push(s);
    const cache: CloseCache = { finalized, adjustments: group(await this.adjustmentsWhere('1', {})), usage: new Map(), changed: new Map(), pending: [] };
    return this.closeRun.run(cache, async () => {
      const value = await fn();
      await this.flush();
      return value;
    });
  }

  private get safetyMs(): number {
    return this.deps.options.safetyMs ?? CLOSE_SAFETY_MS;
  }

  private get db() {
    return this.deps.store.db;
  }

  private plansMap(): Record<string, Plan> {
    return Object.fromEntries(this.deps.plans.list().map((p) => [p.key, p]));
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
    const sub = this.deps.subscriptions.list().find((s) => s.customer === customer && ms(s.phases[0]!.start) <= nowMs && this.subscriptionEnd(s) > nowMs);
    return sub ? this.periodOf(sub, nowMs) : undefined;
  }

  customer(key: string): Customer {
    const c = this.deps.customers.get(key);
    if (!c) throw new AppError('NOT_FOUND', `no customer "${key}"`);
    return c;
  }

  private subscriptionEnd(sub: Subscription): number {
    const last = sub.phases.at(-1);
    return last?.end ? ms(last.end) : Number.MAX_SAFE_INTEGER;
  }

  // ---- usage at a cutoff -------------------------------------------------------------------

  private meterFor(slug: string): Meter {
    const m = this.deps.meters.get(slug);
    if (!m) throw new AppError('METER_NOT_FOUND', `a plan charge refers to meter "${slug}", which does not exist`);
    return m;
  }

  /** Usage of one group (a charge over its ranges) for a customer, counting events ingested at or before `cutoffMs`. */
  async measure(customer: string, group: UsageGroup, cutoffMs: number, corrections: Adjustment[]): Promise<RateInput> {
    const meter = this.meterFor(group.meter);
    const params: Record<string, unknown> = { meterId: meter.id, subject: customer, cutoff: cutoffMs };
    const ranges = group.ranges
      .map((r, i) => {
        params[`s${i}`] = r.start;
        params[`e${i}`] = r.end;
        return `(time >= fromUnixTimestamp64Milli({s${i}:Int64}, 'UTC') AND time < fromUnixTimestamp64Milli({e${i}:Int64}, 'UTC'))`;
      })
      .join(' OR ');
    const where = `meter_id = {meterId:String} AND subject = {subject:String} AND ingested_at <= fromUnixTimestamp64Milli({cutoff:Int64}, 'UTC') AND (${ranges})`;
    const agg = RAW_AGG;
    const query = async (extraSelect: string, group_: string) => {
      const rs = await this.deps.store.ch.query({
        query: `SELECT ${agg[meter.aggregation]} AS q, toString(count()) AS n${extraSelect} FROM ${this.db}.meter_values WHERE ${where}${group_}`,
        query_params: params,
        format: 'JSONEachRow',
      });
      return rs.json<{ q: string; n: string; dim?: string }>();
    };
    const quantityOf = (r: { q: string; n: string } | undefined) => {
      if (!r || r.n === '0') return '0';
      return meter.aggregation === 'AVG' ? averageOf(r.q, r.n) : new Decimal(r.q).toFixed();
    };
    // Manual usage corrections (SUM and COUNT meters) for this meter in this group's ranges.
    const delta = corrections
      .filter((a) => a.meter === group.meter && a.periodStart !== null && group.ranges.some((r) => ms(a.periodStart!) >= r.start && ms(a.periodStart!) < r.end))
      .reduce((acc, a) => acc.plus(a.quantity), new Decimal(0));
    const price: Price = group.price;
    const needsValues = price.model === 'percentage' || (price.model === 'dimensional' && [...Object.values(price.prices), price.default].some((p) => p?.model === 'percentage'));
    if (price.model === 'dimensional') {
      params.dimKey = price.dimension;
      const rows = await query(', group_by[{dimKey:String}] AS dim', ' GROUP BY dim');
      const byDimension: NonNullable<RateInput['byDimension']> = {};
      for (const r of rows) byDimension[r.dim ?? ''] = { quantity: quantityOf(r) };
      if (needsValues) {
        const rs = await this.deps.store.ch.query({ query: `SELECT group_by[{dimKey:String}] AS dim, toString(value) AS v FROM ${this.db}.meter_values WHERE ${where} ORDER BY time, source, id`, query_params: params, format: 'JSONCompactEachRow' });
        for (const [dim, v] of await rs.json<[string, string]>()) (byDimension[dim] ??= { quantity: '0' }).values = [...(byDimension[dim]?.values ?? []), v];
      }
      const total = Object.values(byDimension).reduce((a, d) => a.plus(d.quantity), new Decimal(0));
      return { quantity: total.toFixed(), byDimension };
    }
    let row: { q: string; n: string } | undefined;
    if (this.cache && !needsValues) {
      // One query for every customer of this meter, ranges and cutoff; later subscriptions read it.
      const key = `${meter.id}|${JSON.stringify(group.ranges)}|${cutoffMs}`;
      let all = this.cache.usage.get(key);
      if (!all) {
        const { subject: _s, ...p } = params;
        const allWhere = where.replace('subject = {subject:String} AND ', '');
        all = this.deps.store.ch
          .query({ query: `SELECT subject, ${agg[meter.aggregation]} AS q, toString(count()) AS n FROM ${this.db}.meter_values WHERE ${allWhere} GROUP BY subject`, query_params: p, format: 'JSONEachRow' })
          .then((rs) => rs.json<{ subject: string; q: string; n: string }>())
          .then((rows) => new Map(rows.map((r) => [r.subject, r])));
        this.cache.usage.set(key, all);
      }
      row = (await all).get(customer);
    } else [row] = await query('', '');
    const quantity = new Decimal(quantityOf(row)).plus(delta).toFixed();
    if (!needsValues) return { quantity };
    const rs = await this.deps.store.ch.query({ query: `SELECT toString(value) AS v FROM ${this.db}.meter_values WHERE ${where} ORDER BY time, source, id`, query_params: params, format: 'JSONCompactEachRow' });
    return { quantity, values: (await rs.json<[string]>()).map(([v]) => v) };
  }

  private async usageFor(snapshot: Snapshot, period: Period, cutoffMs: number, adjustments: Adjustment[]): Promise<Record<string, RateInput>> {
    const corrections = adjustments.filter((a) => a.kind === 'usage_correction' && ms(a.createdAt) <= cutoffMs);
    const usage: Record<string, RateInput> = {};
    for (const g of usageGroups(snapshot.subscription, snapshot.plans, period)) usage[g.id] = await this.measure(snapshot.customer.key, g, cutoffMs, corrections);
    return usage;
  }

  // ---- stored invoices and adjustments -----------------------------------------------------

  async finalized(filter: { customer?: string; subscriptionId?: string; id?: string; periodFromMs?: number; periodToMs?: number } = {}): Promise<StoredInvoice[]> {
    if (this.cache && filter.customer !== undefined && filter.subscriptionId === undefined && filter.periodFromMs === undefined && filter.periodToMs === undefined) {
      return (this.cache.finalized.get(filter.customer) ?? []).filter((s) => filter.id === undefined || s.invoice.id === filter.id);
    }
    const where: string[] = ['1'];
    const params: Record<string, unknown> = {};
    const cond = (sql: string, name: string, value: unknown) => {
      if (value === undefined) return;
      where.push(sql);
      params[name] = value;
    };
    cond('customer = {customer:String}', 'customer', filter.customer);
    cond('subscription_id = {sub:String}', 'sub', filter.subscriptionId);
    cond('id = {id:String}', 'id', filter.id);
    cond(`period_start >= fromUnixTimestamp64Milli({pf:Int64}, 'UTC')`, 'pf', filter.periodFromMs);
    cond(`period_start < fromUnixTimestamp64Milli({pt:Int64}, 'UTC')`, 'pt', filter.periodToMs);
    const rs = await this.deps.store.ch.query({
      query: `SELECT any(doc) AS doc, any(snapshot) AS snapshot, any(subscription_id) AS sub FROM ${this.db}.invoices WHERE ${where.join(' AND ')} GROUP BY id ORDER BY min(period_start), id`,
      query_params: params,
      format: 'JSONEachRow',
    });
    return (await rs.json<{ doc: string; snapshot: string; sub: string }>()).map((r) => ({ invoice: JSON.parse(r.doc) as Invoice, snapshot: JSON.parse(r.snapshot) as Snapshot, subscriptionId: r.sub }));
  }

  async adjustments(customer: string): Promise<Adjustment[]> {
    if (this.cache) return this.cache.adjustments.get(customer) ?? [];
    return this.adjustmentsWhere('customer = {customer:String}', { customer });
  }

  private async adjustmentsWhere(where: string, params: Record<string, unknown>): Promise<Adjustment[]> {
    const rs = await this.deps.store.ch.query({
      query: `SELECT id, customer, kind, currency, toString(amount) AS amount, meter, toString(quantity) AS quantity,
                if(isNull(period_start), NULL, toString(toUnixTimestamp64Milli(period_start))) AS ps,
                if(isNull(expires_at), NULL, toString(toUnixTimestamp64Milli(expires_at))) AS ea,
                reason_code, note, actor, toString(toUnixTimestamp64Milli(created_at)) AS ca
              FROM ${this.db}.adjustments WHERE ${where} ORDER BY created_at, id`,
      query_params: params,
      format: 'JSONEachRow',
    });
    const rows = await rs.json<Record<string, string | null>>();
    return rows.map((r) => ({
      id: r.id!,
      customer: r.customer!,
      kind: r.kind as Adjustment['kind'],
      currency: r.currency!,
      amount: r.amount!,
      meter: r.meter!,
      quantity: r.quantity!,
      periodStart: r.ps ? iso(Number(r.ps)) : null,
      expiresAt: r.ea ? iso(Number(r.ea)) : null,
      reasonCode: r.reason_code!,
      note: r.note!,
      actor: r.actor!,
      createdAt: iso(Number(r.ca)),
    }));
  }

  async addAdjustment(a: Omit<Adjustment, 'id' | 'createdAt'>): Promise<Adjustment> {
    const adj: Adjustment = { ...a, id: `adj_${randomUUID().replaceAll('-', '').slice(0, 20)}`, createdAt: new Date().toISOString() };
    await this.deps.store.ch.insert({
      table: `${this.db}.adjustments`,
      values: [
        {
          id: adj.id,
          customer: adj.customer,
          kind: adj.kind,
          currency: adj.currency,
          amount: adj.amount,
          meter: adj.meter,
          quantity: adj.quantity,
          period_start: adj.periodStart ? ms(adj.periodStart) : null,
          expires_at: adj.expiresAt ? ms(adj.expiresAt) : null,
          reason_code: adj.reasonCode,
          note: adj.note,
          actor: adj.actor,
          created_at: ms(adj.createdAt),
        },
      ],
      format: 'JSONEachRow',
    });
    return adj;
  }

  // ---- building ----------------------------------------------------------------------------

  /**
   * The invoice of `sub` for `period` as of `cutoffMs`: a draft (or what finalizing would
   * store). Includes pending adjustments, corrections of earlier finalized periods and credits.
   */
  async compute(sub: Subscription, period: Period, cutoffMs: number, snapshot?: Snapshot): Promise<{ invoice: Invoice; snapshot: Snapshot; items: OneTimeItems }> {
    const snap: Snapshot = snapshot ?? { subscription: sub, plans: this.planSubset(sub), customer: this.customer(sub.customer) };
    const items = await this.oneTimeItems(sub, period, cutoffMs);
    const { adjustments, oneTime, corrections, credits } = items;
    const usage = await this.usageFor(snap, period, cutoffMs, adjustments);
    const end = this.subscriptionEnd(snap.subscription);
    const first = this.periodOf(snap.subscription, ms(snap.subscription.phases[0]!.start), snap.plans, snap.customer);
    const next = this.periodOf(snap.subscription, period.end, snap.plans, snap.customer);
    const invoice = buildInvoice({
      invoiceId: invoiceId(sub.id, period.start),
      customer: snap.customer,
      subscription: snap.subscription,
      plans: snap.plans,
      period,
      firstPeriod: first.start === period.start,
      ...(end > period.end ? { nextPeriod: next } : {}),
      usage,
      cutoffMs,
      rounding: this.deps.options.rounding,
      adjustments: oneTime,
      corrections,
      credits,
    });
    return { invoice, snapshot: snap, items };
  }

  /**
   * What an invoice of `sub`'s `period` carries besides fees and usage, at `cutoffMs`: one-time
   * adjustments not applied by an earlier invoice, corrections of earlier periods, prepaid credits.
   */
  private async oneTimeItems(sub: Subscription, period: Period, cutoffMs: number): Promise<OneTimeItems> {
    const adjustments = await this.adjustments(sub.customer);
    const prior = (await this.finalized({ customer: sub.customer })).filter((s) => ms(s.invoice.periodStart) < period.start || s.subscriptionId !== sub.id);
    const appliedIds = new Set(prior.flatMap((s) => s.invoice.lines.map((l) => l.id.split(':').at(-1)!)));
    const oneTime: OneTimeAdjustment[] = adjustments
      .filter((a) => (a.kind === 'credit' || a.kind === 'charge') && ms(a.createdAt) <= cutoffMs && !appliedIds.has(a.id))
      .map((a) => ({ id: a.id, description: `${a.kind === 'credit' ? 'Credit' : 'Charge'} (${a.reasonCode})${a.note ? `: ${a.note}` : ''}`, amount: a.kind === 'credit' ? new Decimal(a.amount).neg().toFixed() : a.amount }));
    const drawn = new Map<string, Decimal>();
    for (const s of prior) for (const l of s.invoice.lines) if (l.kind === 'credit') drawn.set(l.id.split(':credit:')[1]!, (drawn.get(l.id.split(':credit:')[1]!) ?? new Decimal(0)).minus(l.amount));
    const credits: CreditGrant[] = adjustments
      .filter((a) => a.kind === 'credit_grant')
      .map((a) => ({ id: a.id, amount: a.amount, drawn: (drawn.get(a.id) ?? new Decimal(0)).toFixed(), createdAtMs: ms(a.createdAt), ...(a.expiresAt ? { expiresAtMs: ms(a.expiresAt) } : {}) }));
    const corrections = await this.corrections(sub, prior.filter((s) => s.subscriptionId === sub.id), cutoffMs, adjustments);
    return { adjustments, oneTime, corrections, credits };
  }

  private planSubset(sub: Subscription): Record<string, Plan> {
    const all = this.plansMap();
    const out: Record<string, Plan> = {};
    for (const p of sub.phases) {
      const plan = all[p.plan];
      if (!plan) throw new AppError('NOT_FOUND', `subscription ${sub.id} uses plan "${p.plan}", which does not exist`);
      out[p.plan] = plan;
    }
    return out;
  }

  /**
   * Correction lines for earlier finalized periods of `sub` that gained usage after they were
   * last billed: each period is priced again (with the plans as they were when it was
   * finalized) at the new cutoff and at the cutoff it was last billed at; the difference per
   * charge becomes a line.
   */
  private async corrections(sub: Subscription, prior: StoredInvoice[], cutoffMs: number, adjustments: Adjustment[]): Promise<CorrectionLine[]> {
    const out: CorrectionLine[] = [];
    const originals = prior.filter((s) => s.invoice.lines.some((l) => l.kind !== 'correction') || s.invoice.lines.length === 0).slice(-CORRECTION_LOOKBACK);
    for (const orig of originals) {
      const period = { start: ms(orig.invoice.periodStart), end: ms(orig.invoice.periodEnd) };
      const lastBilled = Math.max(
        ms(orig.invoice.cutoff),
        ...prior.filter((s) => s.invoice.lines.some((l) => l.kind === 'correction' && ms(l.periodStart) === period.start)).map((s) => ms(s.invoice.cutoff)),
      );
      if (lastBilled >= cutoffMs) continue;
      if (!(await this.changedSince(sub.customer, period, lastBilled, cutoffMs, adjustments))) continue;
      const groups = usageGroups(orig.snapshot.subscription, orig.snapshot.plans, period);
      const [before, after] = await Promise.all([
        this.usageFor(orig.snapshot, period, lastBilled, adjustments),
        this.usageFor(orig.snapshot, period, cutoffMs, adjustments),
      ]);
      const build = (usage: Record<string, RateInput>) =>
        buildInvoice({ invoiceId: orig.invoice.id, customer: orig.snapshot.customer, subscription: orig.snapshot.subscription, plans: orig.snapshot.plans, period, firstPeriod: false, usage, cutoffMs, rounding: this.deps.options.rounding });
      const a = usageAmounts(build(before));
      const b = usageAmounts(build(after));
      for (const key of new Set([...a.keys(), ...b.keys()])) {
        const diff = (b.get(key) ?? new Decimal(0)).minus(a.get(key) ?? 0);
        if (diff.isZero()) continue;
        const g = groups.find((x) => x.id === key);
        const qd = g ? new Decimal(after[key]?.quantity ?? '0').minus(before[key]?.quantity ?? '0').toFixed() : '0';
        out.push({
          period,
          meter: g?.meter ?? '',
          chargeKey: key,
          quantityDelta: qd,
          amountDelta: diff.toFixed(),
          breakdown: [
            { description: `as billed (usage ingested by ${iso(lastBilled)})`, units: before[key]?.quantity ?? '0', amount: (a.get(key) ?? new Decimal(0)).neg().toFixed() },
            { description: `with late usage (ingested by ${iso(cutoffMs)})`, units: after[key]?.quantity ?? '0', amount: (b.get(key) ?? new Decimal(0)).toFixed() },
          ],
        });
      }
    }
    return out;
  }

  private async changedSince(customer: string, period: Period, fromMs: number, toMs: number, adjustments: Adjustment[]): Promise<boolean> {
    if (adjustments.some((a) => a.kind === 'usage_correction' && a.periodStart && ms(a.periodStart) >= period.start && ms(a.periodStart) < period.end && ms(a.createdAt) > fromMs && ms(a.createdAt) <= toMs)) return true;
    const where = `time >= fromUnixTimestamp64Milli({ps:Int64}, 'UTC') AND time < fromUnixTimestamp64Milli({pe:Int64}, 'UTC')
                AND ingested_at > fromUnixTimestamp64Milli({from:Int64}, 'UTC') AND ingested_at <= fromUnixTimestamp64Milli({to:Int64}, 'UTC')`;
    const params = { ps: period.start, pe: period.end, from: fromMs, to: toMs };
    if (this.cache) {
      // One query for every customer of this period and interval; later subscriptions read it.
      // (A query per subscription cost a few ms each: most of a close with many earlier invoices.)
      const key = `${period.start}|${period.end}|${fromMs}|${toMs}`;
      let changed = this.cache.changed.get(key);
      if (!changed) {
        changed = this.deps.store.ch
          .query({ query: `SELECT DISTINCT subject FROM ${this.db}.meter_values WHERE ${where}`, query_params: params, format: 'JSONCompactEachRow' })
          .then((rs) => rs.json<[string]>())
          .then((rows) => new Set(rows.map(([subject]) => subject)));
        this.cache.changed.set(key, changed);
      }
      return (await changed).has(customer);
    }
    const rs = await this.deps.store.ch.query({
      query: `SELECT count() AS n FROM ${this.db}.meter_values WHERE subject = {subject:String} AND ${where}`,
      query_params: { subject: customer, ...params },
      format: 'JSONEachRow',
    });
    return Number((await rs.json<{ n: string }>())[0]?.n ?? 0) > 0;
  }

  // ---- close -------------------------------------------------------------------------------

  /** Periods of `sub` that have ended and are not finalized, oldest first, up to `nowMs`. */
  async duePeriods(sub: Subscription, nowMs: number, finalizedStarts: Set<number>): Promise<Period[]> {
    const plans = this.planSubset(sub);
    const customer = this.customer(sub.customer);
    const out: Period[] = [];
    let p = this.periodOf(sub, ms(sub.phases[0]!.start), plans, customer);
    const end = this.subscriptionEnd(sub);
    while (p.end + this.deps.options.graceMs + this.safetyMs <= nowMs && p.start < end) {
      if (!finalizedStarts.has(p.start)) out.push(p);
      p = this.periodOf(sub, p.end, plans, customer);
    }
    return out;
  }

  /**
   * Finalizes `sub`'s invoice for `period`: computes it at cutoff = period end + grace, numbers
   * it and stores it. Idempotent: a finalized invoice is returned as stored. Must run under the
   * close lease (see `runDue` and `closeByHand`).
   */
  async finalize(sub: Subscription, period: Period, nowMs: number): Promise<{ invoice: Invoice; created: boolean }> {
    const id = invoiceId(sub.id, period.start);
    const [existing] = await this.finalized({ customer: sub.customer, id });
    if (existing) return { invoice: existing.invoice, created: false };
    const cutoffMs = period.end + this.deps.options.graceMs;
    if (cutoffMs + this.safetyMs > nowMs) {
      throw new AppError('REQUEST_INVALID', `the period ${iso(period.start)} – ${iso(period.end)} can be finalized after ${iso(cutoffMs + this.safetyMs)} (period end + grace); use dryRun to preview it now`);
    }
    const { invoice, snapshot } = await this.compute(sub, period, cutoffMs);
    if (this.cache) {
      // Numbered and stored with its block (see flush); visible to the rest of this run now.
      const final: Invoice = { ...invoice, status: 'finalized', issuedAt: iso(nowMs) };
      this.cache.pending.push({ invoice: final, snapshot, subscriptionId: sub.id });
      const list = this.cache.finalized.get(sub.customer) ?? this.cache.finalized.set(sub.customer, []).get(sub.customer)!;
      list.push({ invoice: final, snapshot, subscriptionId: sub.id });
      if (this.cache.pending.length >= STORE_BLOCK) await this.flush();
      return { invoice: final, created: true };
    }
    const final: Invoice = { ...invoice, status: 'finalized', number: (await this.allocateNumbers(period, 1))[0], issuedAt: iso(nowMs) };
    await this.store([{ invoice: final, snapshot, subscriptionId: sub.id }]);
    this.deps.logger.info({ invoice: final.id, number: final.number, customer: final.customer, total: final.total, currency: final.currency }, 'invoice finalized');
    return { invoice: final, created: true };
  }

  /** Allocates `count` consecutive invoice numbers with one compare-and-set on the catalog counter. */
  private async allocateNumbers(period: Period, count: number): Promise<string[]> {
    const key = 'counter.invoice';
    for (let attempt = 0; attempt < 20; attempt++) {
      const e = await this.deps.kv.get(key);
      const first = e && e.operation === 'PUT' ? Number(e.string()) + 1 : 1;
      const last = first + count - 1;
      try {
        if (e && e.operation === 'PUT') await this.deps.kv.update(key, String(last), e.revision);
        else await this.deps.kv.create(key, String(last));
        return Array.from({ length: count }, (_, i) => `${this.deps.options.numberPrefix}-${new Date(period.end).getUTCFullYear()}-${String(first + i).padStart(6, '0')}`);
      } catch {
        /* someone else took these numbers: read again */
      }
    }
    throw new AppError('CATALOG_CONFLICT', 'could not allocate invoice numbers; retry');
  }

  /** Numbers and stores the invoices pending in the close cache. */
  private async flush(): Promise<void> {
    const pending = this.cache?.pending.splice(0) ?? [];
    if (pending.length === 0) return;
    // The year in a number is the period end's; numbers are allocated per year group, in order.
    for (const year of [...new Set(pending.map((p) => new Date(p.invoice.periodEnd).getUTCFullYear()))]) {
      const items = pending.filter((p) => new Date(p.invoice.periodEnd).getUTCFullYear() === year);
      const numbers = await this.allocateNumbers({ start: 0, end: Date.parse(items[0]!.invoice.periodEnd) }, items.length);
      items.forEach((p, i) => (p.invoice.number = numbers[i]));
    }
    await this.store(pending);
    for (const p of pending) this.deps.logger.info({ invoice: p.invoice.id, number: p.invoice.number, customer: p.invoice.customer, total: p.invoice.total, currency: p.invoice.currency }, 'invoice finalized');
  }

  private async store(items: { invoice: Invoice; snapshot: Snapshot; subscriptionId: string }[]): Promise<void> {
    const { ch } = this.deps.store;
    const token = createHash('sha256').update(items.map((i) => i.invoice.id).join(',')).digest('hex').slice(0, 32);
    // Lines first, then the invoice rows that make them "finalized": a crash between the two
    // leaves lines without invoices, which the retry (same token) does not duplicate.
    await ch.insert({
      table: `${this.db}.invoice_lines`,
      values: items.flatMap(({ invoice: inv }) =>
        inv.lines.map((l) => ({
          invoice_id: inv.id,
          line_id: l.id,
          customer: inv.customer,
          currency: inv.currency,
          invoice_period_start: ms(inv.periodStart),
          kind: l.kind,
          meter: l.meter ?? '',
          description: l.description,
          period_start: ms(l.periodStart),
          period_end: ms(l.periodEnd),
          quantity: l.quantity,
          amount: l.amount,
          amount_minor: l.amountMinor,
        })),
      ),
      format: 'JSONEachRow',
      clickhouse_settings: { insert_deduplication_token: `lines:${token}` },
    });
    await ch.insert({
      table: `${this.db}.invoices`,
      values: items.map(({ invoice: inv, snapshot, subscriptionId }) => ({
        id: inv.id,
        number: inv.number,
        customer: inv.customer,
        subscription_id: subscriptionId,
        currency: inv.currency,
        period_start: ms(inv.periodStart),
        period_end: ms(inv.periodEnd),
        cutoff: ms(inv.cutoff),
        issued_at: ms(inv.issuedAt!),
        total: inv.total,
        total_minor: inv.totalMinor,
        doc: JSON.stringify(inv),
        snapshot: JSON.stringify(snapshot),
      })),
      format: 'JSONEachRow',
      clickhouse_settings: { insert_deduplication_token: `invoices:${token}` },
    });
  }

  /** Finalizes every due period of every subscription, oldest first, under the close lease. */
  async runDue(nowMs: number): Promise<{ ran: boolean; finalized: Invoice[] }> {
    const r = await this.deps.leases.withLease(
      'billing-close',
      () =>
        this.withCache(async () => {
          const done: Invoice[] = [];
          const starts = await this.finalizedStarts();
          for (const sub of this.deps.subscriptions.list()) {
            for (const p of await this.duePeriods(sub, nowMs, starts.get(sub.id) ?? new Set())) {
              const { invoice, created } = await this.finalize(sub, p, nowMs);
              if (created) done.push(invoice);
            }
          }
          return done;
        }),
      this.deps.logger,
    );
    return r.ran ? { ran: true, finalized: r.value } : { ran: false, finalized: [] };
  }

  private async finalizedStarts(): Promise<Map<string, Set<number>>> {
    const rs = await this.deps.store.ch.query({
      query: `SELECT subscription_id AS s, toString(toUnixTimestamp64Milli(period_start)) AS p FROM ${this.db}.invoices GROUP BY s, p`,
      format: 'JSONEachRow',
    });
    const out = new Map<string, Set<number>>();
    for (const r of await rs.json<{ s: string; p: string }>()) {
      if (!out.has(r.s)) out.set(r.s, new Set());
      out.get(r.s)!.add(Number(r.p));
    }
    return out;
  }

  /**
   * A close run by hand: for each subscription (or one customer's), the period that starts in
   * calendar month `month` (YYYY-MM, in the customer's zone). `dryRun` computes the invoices
   * as finalizing would (at the same cutoff) without storing anything.
   */
  async closeByHand(month: string, opts: { customer?: string; dryRun: boolean; nowMs: number }): Promise<{ invoices: Invoice[]; skipped: { subscription: string; reason: string }[] }> {
    const m = /^(\d{4})-(\d{2})$/.exec(month);
    if (!m) throw new AppError('REQUEST_INVALID', 'period must be a month, YYYY-MM');
    const subs = this.deps.subscriptions.list().filter((s) => !opts.customer || s.customer === opts.customer);
    if (opts.customer && subs.length === 0) throw new AppError('NOT_FOUND', `customer "${opts.customer}" has no subscription`);
    const work = async () => {
      const invoices: Invoice[] = [];
      const skipped: { subscription: string; reason: string }[] = [];
      for (const sub of subs) {
        const customer = this.customer(sub.customer);
        const plans = this.planSubset(sub);
        const monthStartLocal = Date.UTC(Number(m[1]), Number(m[2]) - 1, 1);
        let p = this.periodOf(sub, monthStartLocal - 14 * 86_400_000, plans, customer);
        const inMonth = (x: Period) => {
          const lp = new Date(x.start + tzOffsetMinutes(customer.timeZone, x.start) * 60_000);
          return lp.getUTCFullYear() === Number(m[1]) && lp.getUTCMonth() === Number(m[2]) - 1;
        };
        while (!inMonth(p) && p.start < monthStartLocal + 45 * 86_400_000) p = this.periodOf(sub, p.end, plans, customer);
        if (!inMonth(p)) {
          skipped.push({ subscription: sub.id, reason: `no billing period starts in ${month}` });
          continue;
        }
        if (p.end <= ms(sub.phases[0]!.start) || p.start >= this.subscriptionEnd(sub)) {
          skipped.push({ subscription: sub.id, reason: `not active in the period starting ${iso(p.start)}` });
          continue;
        }
        if (opts.dryRun) {
          const [existing] = await this.finalized({ customer: sub.customer, id: invoiceId(sub.id, p.start) });
          if (existing) {
            // The preview of a finalized period is computed again from its snapshot, at its cutoff.
            const again = await this.compute(sub, p, ms(existing.invoice.cutoff), existing.snapshot);
            invoices.push({ ...again.invoice, status: 'draft' });
          } else invoices.push((await this.compute(sub, p, Math.min(opts.nowMs, p.end + this.deps.options.graceMs))).invoice);
          continue;
        }
        try {
          invoices.push((await this.finalize(sub, p, opts.nowMs)).invoice);
        } catch (err) {
          if (err instanceof AppError && err.code === 'REQUEST_INVALID') skipped.push({ subscription: sub.id, reason: err.message });
          else throw err;
        }
      }
      return { invoices, skipped };
    };
    if (opts.dryRun) return this.withCache(work);
    const r = await this.deps.leases.withLease('billing-close', () => this.withCache(work), this.deps.logger);
    if (!r.ran) throw new AppError('CATALOG_CONFLICT', 'another billing close is running; retry in a minute');
    return r.value;
  }

  /** Draft invoices: periods that ended but are not finalized yet (in their grace period), computed now. */
  async drafts(nowMs: number, customer?: string): Promise<Invoice[]> {
    const starts = await this.finalizedStarts();
    const out: Invoice[] = [];
    for (const sub of this.deps.subscriptions.list().filter((s) => !customer || s.customer === customer)) {
      const plans = this.planSubset(sub);
      const c = this.customer(sub.customer);
      const current = this.periodOf(sub, nowMs, plans, c);
      const prev = this.periodOf(sub, current.start - 1, plans, c);
      if (prev.end > ms(sub.phases[0]!.start) && prev.start < this.subscriptionEnd(sub) && !(starts.get(sub.id) ?? new Set()).has(prev.start) && prev.end + this.deps.options.graceMs + this.safetyMs > nowMs) {
        out.push((await this.compute(sub, prev, nowMs)).invoice);
      }
    }
    return out;
  }

  /**
   * The projected invoice of a customer's current period: the draft so far (usage up to now),
   * and a projection to the period end at the current run rate (usage quantities scaled by
   * period length / elapsed time, for SUM and COUNT meters; others are kept as they are).
   */
  async projected(customerKey: string, nowMs: number): Promise<{ period: Period; soFar: Invoice; projected: Invoice; elapsedShare: string }[]> {
    const subs = this.deps.subscriptions.list().filter((s) => s.customer === customerKey);
    const out = [];
    for (const sub of subs) {
      if (ms(sub.phases[0]!.start) > nowMs || this.subscriptionEnd(sub) <= nowMs) continue;
      const period = this.periodOf(sub, nowMs);
      const { invoice: soFar, snapshot, items } = await this.compute(sub, period, nowMs);
      const elapsed = new Decimal(nowMs - period.start).div(period.end - period.start);
      // Adjustments, corrections and credits are known amounts: the projection carries them as the invoice so far does.
      const { adjustments, oneTime, corrections, credits } = items;
      const usage = await this.usageFor(snapshot, period, nowMs, adjustments);
      const scaled: Record<string, RateInput> = {};
      for (const g of usageGroups(snapshot.subscription, snapshot.plans, period)) {
        const meter = this.meterFor(g.meter);
        const u = usage[g.id] ?? { quantity: '0' };
        const scalable = (meter.aggregation === 'SUM' || meter.aggregation === 'COUNT') && elapsed.gt(0);
        const scale = (q: string) => (scalable ? new Decimal(q).div(elapsed).toDecimalPlaces(9, Decimal.ROUND_HALF_UP).toFixed() : q);
        scaled[g.id] = {
          quantity: scale(u.quantity),
          ...(u.byDimension ? { byDimension: Object.fromEntries(Object.entries(u.byDimension).map(([k, v]) => [k, { quantity: scale(v.quantity) }])) } : {}),
          ...(u.values ? { values: u.values } : {}),
        };
      }
      const end = this.subscriptionEnd(sub);
      const first = this.periodOf(sub, ms(sub.phases[0]!.start));
      const projected = buildInvoice({
        invoiceId: soFar.id,
        customer: snapshot.customer,
        subscription: snapshot.subscription,
        plans: snapshot.plans,
        period,
        firstPeriod: first.start === period.start,
        ...(end > period.end ? { nextPeriod: this.periodOf(sub, period.end) } : {}),
        usage: scaled,
        cutoffMs: nowMs,
        rounding: this.deps.options.rounding,
        adjustments: oneTime,
        corrections,
        credits,
      });
      out.push({ period, soFar, projected, elapsedShare: elapsed.toDecimalPlaces(6).toFixed() });
    }
    return out;
  }
}
