import { Counter, Gauge, type Registry } from 'prom-client';
import { Decimal } from '../common/decimal.ts';
import { errorMessage } from '../common/errors.ts';
import { AppError } from '../common/errors.ts';
import { CLOSE_SAFETY_MS, type Subscription } from '../rater/index.ts';
import { accountSummaries, openAnomalyStats, type AccountDeps } from './accounts.ts';
import type { AccountRow, AccountsPage } from './contracts.ts';
import type { Listing, PageQuery } from './pagination.ts';

/** How the accounts cache refreshes; every field has a default (see DEFAULT_ACCOUNTS_CACHE). */
export interface AccountsCacheOptions {
  /** Time between refreshes (each one starts after the previous ended). */
  refreshMs: number;
  /** Every this often a refresh recomputes every customer: what no cheap signal catches (adjustments, a close in another process, the projection's drift with time, usage stored late). */
  fullRefreshMs: number;
  /** Rows are visible in the store within this long of their `ingested_at` (the rater's CLOSE_SAFETY_MS); the usage watermark stays this far behind. */
  visibleLagMs: number;
  /** Customers priced per batch (one usage query per meter and period start per batch). */
  batchSize: number;
  /** A request before the first build has finished waits this long, then gets 503 (retry). */
  warmupWaitMs: number;
}

export const DEFAULT_ACCOUNTS_CACHE: AccountsCacheOptions = { refreshMs: 3_000, fullRefreshMs: 30 * 60_000, visibleLagMs: CLOSE_SAFETY_MS, batchSize: 250, warmupWaitMs: 15_000 };

interface Entry {
  row: AccountRow;
  /** Recompute at or after this instant: the period ends, or a subscription phase starts or ends. */
  validUntilMs: number;
}

/** The usage watermark: counts of rows ingested after `afterMs` per subject, as last seen. */
interface Watermark {
  afterMs: number;
  seen: Map<string, number>;
}

interface LastRefresh {
  asOfMs: number;
  durationMs: number;
  recomputed: number;
  full: boolean;
  error: string | null;
}

const DAY = 86_400_000;
/** How far before the earliest current period the usage watermark looks for rows (the period before: late usage). */
const LOOKBACK_MS = 62 * DAY;

function metric<T>(registry: Registry | undefined, name: string, make: (registers: Registry[]) => T): T {
  const existing = registry?.getSingleMetric(name) as T | undefined;
  return existing ?? make(registry ? [registry] : []);
}

/**
 * Per-customer account summaries held in memory, for GET /api/v1/accounts at any number of
 * customers: built once at start, then refreshed on a timer, recomputing only the customers
 * something changed for, with `accountSummaries` itself (so a cached row is what the on-demand
 * computation gives at its `computedAt`). What marks a customer for recomputation:
 * - usage: a count per subject of rows ingested after a watermark (`UsageStore.ingestedCounts`)
 *   that differs from the count seen last time;
 * - the catalog: a change of the customer, one of its subscriptions or a plan it is on (a meter
 *   change recomputes everyone: the usage columns change);
 * - time: its period ends or a subscription phase starts or ends (`validUntilMs`);
 * - `invalidate(key)`, and every `fullRefreshMs` a full recomputation.
 * Open anomalies are re-read on every refresh for everyone (two queries) and patched in.
 * One refresh at a time; a failed one keeps the last good rows and is logged and counted.
 */
export class AccountsCache {
  private readonly entries = new Map<string, Entry>();
  private readonly dirty = new Set<string>();
  private everything = true;
  private watermark: Watermark | undefined;
  private lastFullMs = 0;
  private last: LastRefresh | undefined;
  private running: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private readonly unsubscribe: (() => void)[] = [];
  private firstBuild: Promise<void>;
  private resolveFirst!: () => void;
  /** Sorted rows per `sort:order`, dropped whenever a row changes. */
  private sorted = new Map<string, AccountRow[]>();
  private readonly failures: Counter;
  private readonly seconds: Gauge;
  private readonly recomputedTotal: Counter;
  readonly options: AccountsCacheOptions;

  constructor(
    private readonly deps: AccountDeps & { registry?: Registry },
    options: Partial<AccountsCacheOptions> = {},
    private readonly now: () => number = Date.now,
  ) {
    this.options = { ...DEFAULT_ACCOUNTS_CACHE, ...options };
    this.firstBuild = new Promise<void>((r) => (this.resolveFirst = r));
    this.failures = metric(deps.registry, 'meterline_api_accounts_refresh_failures_total', (registers) => new Counter({ name: 'meterline_api_accounts_refresh_failures_total', help: 'Accounts cache refreshes that failed (the last good rows stay served)', registers }));
    this.seconds = metric(deps.registry, 'meterline_api_accounts_refresh_seconds', (registers) => new Gauge({ name: 'meterline_api_accounts_refresh_seconds', help: 'Duration of the last successful accounts cache refresh', registers }));
    this.recomputedTotal = metric(deps.registry, 'meterline_api_accounts_recomputed_total', (registers) => new Counter({ name: 'meterline_api_accounts_recomputed_total', help: 'Customer summaries the accounts cache recomputed', registers }));
  }

  /** Follows the catalog and starts the refresh loop; the first (full) build runs now, in the background. */
  start(): void {
    const d = this.deps;
    this.unsubscribe.push(
      d.customers.onChange((key, next) => (next ? this.invalidate(key) : this.forget(key))),
      d.subscriptions.onChange((_k, next, prev) => [next, prev].forEach((s) => s && this.invalidate(s.customer))),
      d.plans.onChange((key) => d.subscriptions.list().filter((s) => s.phases.some((p) => p.plan === key)).forEach((s) => this.invalidate(s.customer))),
      d.meters.onChange(() => (this.everything = true)),
    );
    this.loop();
  }

  /** Marks one customer for recomputation at the next refresh. */
  invalidate(key: string): void {
    this.dirty.add(key);
  }

  /** Marks every customer for recomputation at the next refresh (e.g. after a billing close). */
  invalidateAll(): void {
    this.everything = true;
  }

  private forget(key: string): void {
    if (this.entries.delete(key)) this.sorted.clear();
  }

  private loop(): void {
    if (this.stopped) return;
    void this.refresh().finally(() => {
      if (!this.stopped) this.timer = setTimeout(() => this.loop(), this.options.refreshMs);
    });
  }

  stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    for (const u of this.unsubscribe) u();
    return this.running ?? Promise.resolve();
  }

  /** Refreshes now, or waits for the refresh running (never two at once). */
  refresh(): Promise<void> {
    this.running ??= this.refreshOnce().finally(() => (this.running = undefined));
    return this.running;
  }

  private async refreshOnce(): Promise<void> {
    const t0 = performance.now();
    const nowMs = this.now();
    const full = this.everything || nowMs - this.lastFullMs >= this.options.fullRefreshMs;
    let keys: string[] = [];
    try {
      keys = await this.dueKeys(nowMs, full);
      await this.recompute(keys, nowMs);
      await this.patchAlerts();
      for (const k of this.entries.keys()) if (!this.deps.customers.get(k)) this.forget(k);
      if (full) this.lastFullMs = nowMs;
      const durationMs = Math.round(performance.now() - t0);
      this.last = { asOfMs: nowMs, durationMs, recomputed: keys.length, full, error: null };
      this.seconds.set(durationMs / 1000);
      this.resolveFirst();
    } catch (err) {
      // What was due stays due: the next refresh tries it again.
      if (full) this.everything = true;
      for (const k of keys) this.dirty.add(k);
      this.failures.inc();
      this.deps.logger.error({ err }, 'accounts cache refresh failed; serving the last good rows, retrying at the next tick');
      if (this.last) this.last = { ...this.last, error: errorMessage(err) };
    }
  }

  /**
   * The customers to recompute, and the usage watermark moved on. Order: the usage counts are
   * read before anything is priced, so a row stored meanwhile is either in the pricing or shows
   * as a changed count next time (priced twice at worst, never missed).
   */
  private async dueKeys(nowMs: number, full: boolean): Promise<string[]> {
    const all = this.deps.customers.list().map((c) => c.key);
    const changed = await this.usageChanged(nowMs);
    if (full) {
      this.everything = false;
      this.dirty.clear();
      return all;
    }
    const due = new Set(this.dirty);
    this.dirty.clear();
    for (const k of all) {
      const e = this.entries.get(k);
      if (!e || e.validUntilMs <= nowMs || changed.has(k)) due.add(k);
    }
    return [...due].filter((k) => this.deps.customers.get(k));
  }

  /**
   * Subjects whose rows ingested after the watermark differ in number from last time. The
   * watermark moves to `now - visibleLagMs` once it is twice that far behind, taking the counts
   * after the new mark from the same read as its baseline. Rows of events more than LOOKBACK_MS
   * before the earliest current period are not looked at (they reach the rows at the next full
   * refresh): the event-time bound keeps the read to a few partitions.
   */
  private async usageChanged(nowMs: number): Promise<Set<string>> {
    const lag = this.options.visibleLagMs;
    const w = this.watermark ?? { afterMs: nowMs - lag, seen: new Map<string, number>() };
    const move = nowMs - lag >= w.afterMs + lag;
    const splitMs = move ? nowMs - lag : w.afterMs;
    const starts = [...this.entries.values()].map((e) => Date.parse(e.row.period.start));
    // Late usage of the period before shows too (corrections on the current invoice).
    const timeFromMs = (starts.length > 0 ? starts.reduce((a, b) => Math.min(a, b)) : nowMs) - LOOKBACK_MS;
    const counts = await this.deps.usage.ingestedCounts({ afterMs: w.afterMs, splitMs, timeFromMs });
    const changed = new Set<string>();
    for (const [s, c] of counts) if (w.seen.get(s) !== c.count) changed.add(s);
    for (const s of w.seen.keys()) if (!counts.has(s)) changed.add(s);
    this.watermark = move
      ? { afterMs: splitMs, seen: new Map([...counts].filter(([, c]) => c.afterSplit > 0).map(([s, c]) => [s, c.afterSplit])) }
      : { afterMs: w.afterMs, seen: new Map([...counts].map(([s, c]) => [s, c.count])) };
    return changed;
  }

  private async recompute(keys: string[], nowMs: number): Promise<void> {
    const computedAt = new Date(nowMs).toISOString();
    for (let i = 0; i < keys.length; i += this.options.batchSize) {
      const batch = keys.slice(i, i + this.options.batchSize);
      const r = await accountSummaries(this.deps, batch, nowMs);
      for (const item of r.items) this.entries.set(item.customer.key, { row: { ...item, computedAt }, validUntilMs: this.validUntil(item.customer.key, Date.parse(item.period.end), nowMs) });
      this.recomputedTotal.inc(r.items.length);
      this.sorted.clear();
    }
  }

  /** The period's end, or an earlier start or end of one of the customer's subscription phases. */
  private validUntil(customer: string, periodEndMs: number, nowMs: number): number {
    const edges = this.deps.subscriptions
      .list()
      .filter((s: Subscription) => s.customer === customer)
      .flatMap((s) => s.phases.flatMap((p) => [Date.parse(p.start), p.end ? Date.parse(p.end) : Infinity]))
      .filter((t) => t > nowMs);
    return Math.min(periodEndMs, ...edges);
  }

  private async patchAlerts(): Promise<void> {
    const stats = await openAnomalyStats(this.deps);
    for (const [k, e] of this.entries) {
      const s = stats.get(k) ?? { openAnomalies: 0, worstSeverity: null };
      if (e.row.openAnomalies === s.openAnomalies && e.row.worstSeverity === s.worstSeverity) continue;
      e.row = { ...e.row, ...s };
      this.sorted.clear();
    }
  }

  /** The page asked for, from memory. Before the first build: waits for it (up to `warmupWaitMs`), then 503. */
  async page(listing: Listing<AccountRow>, q: PageQuery): Promise<AccountsPage> {
    if (!this.last) await this.waitFirst();
    const last = this.last!;
    const rows = this.sortedRows(listing, q);
    const needle = q.q?.toLowerCase();
    const matching = needle && listing.search ? rows.filter((r) => listing.search!(r).some((t) => t?.toLowerCase().includes(needle))) : rows;
    const from = (q.page - 1) * q.pageSize;
    return {
      asOf: new Date(last.asOfMs).toISOString(),
      items: matching.slice(from, from + q.pageSize),
      page: q.page,
      pageSize: q.pageSize,
      totalCount: matching.length,
      refresh: { durationMs: last.durationMs, recomputed: last.recomputed, full: last.full, error: last.error },
    };
  }

  private async waitFirst(): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const waited = await Promise.race([this.firstBuild.then(() => true), new Promise<boolean>((r) => (timer = setTimeout(() => r(false), this.options.warmupWaitMs)))]);
    clearTimeout(timer);
    if (!waited) throw new AppError('STORE_UNAVAILABLE', `the accounts overview is still being built (${this.deps.customers.list().length} customers); retry in a few seconds`, { details: { retryAfterSeconds: 5 } });
  }

  /** Every row in the order asked for, memoized until a row changes (sorting 100k rows per request would cost more than the request). */
  private sortedRows(listing: Listing<AccountRow>, q: PageQuery): AccountRow[] {
    const id = `${q.sort}:${q.order}`;
    const hit = this.sorted.get(id);
    if (hit) return hit;
    const key = listing.sort[q.sort] ?? listing.sort[listing.defaultSort]!;
    const dir = q.order === 'desc' ? -1 : 1;
    const keyed = [...this.entries.values()].map((e) => ({ r: e.row, k: sortValue(key(e.row)) }));
    keyed.sort((a, b) => compareKeys(a.k, b.k, dir) || a.r.customer.key.localeCompare(b.r.customer.key));
    const out = keyed.map((x) => x.r);
    this.sorted.set(id, out);
    return out;
  }
}

const collator = new Intl.Collator('en', { sensitivity: 'base', numeric: true });

type SortValue = string | number | Decimal | undefined;

/** A decimal string tagged by `decimalKey` becomes a Decimal once per row, not once per comparison. */
function sortValue(v: string | number | undefined): SortValue {
  return typeof v === 'string' && v.startsWith('#') ? new Decimal(v.slice(1)) : v;
}

/** Missing values last in either order; decimals exactly (a float only where it already orders them); text by the collator. */
function compareKeys(a: SortValue, b: SortValue, dir: number): number {
  if (a === b) return 0;
  if (a === undefined) return 1;
  if (b === undefined) return -1;
  if (a instanceof Decimal && b instanceof Decimal) {
    // Number() is monotonic: different floats order the decimals; equal floats need the exact comparison.
    const fa = a.toNumber();
    const fb = b.toNumber();
    return dir * (fa !== fb ? Math.sign(fa - fb) : a.comparedTo(b));
  }
  if (typeof a === 'number' && typeof b === 'number') return dir * (a - b);
  return dir * collator.compare(String(a), String(b));
}

/** A decimal string as a sort key of the accounts listing: compared exactly, not as text. */
export const decimalKey = (s: string | undefined): string | undefined => (s === undefined ? undefined : `#${s}`);
