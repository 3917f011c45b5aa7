import { Decimal } from '../common/decimal.ts';
import type { Store } from '../common/clickhouse.ts';
import { AppError } from '../common/errors.ts';
import { MAINTENANCE_LEASE, type Leases } from '../common/lease.ts';
import type { Logger } from '../common/logger.ts';
import type { Meter } from '../processor/index.ts';
import { planUsageQuery, type Source, type UsageQuery, type WindowSize } from './usage-plan.ts';

export interface UsageRow {
  /** Exact decimal string. */
  value: string;
  windowStart: string;
  windowEnd: string;
  subject: string | null;
  groupBy: Record<string, string>;
}

export interface UsageResult {
  from?: string;
  to: string;
  windowSize?: WindowSize;
  data: UsageRow[];
  /** Which table answered: a rollup, or the per-event values. */
  source: Source;
}

/** AVG is rounded half-up to 9 decimal places (the scale of stored values). */
export const AVG_SCALE = 9;

const iso = (s: number | string) => new Date(Number(s) * 1000).toISOString().replace('.000Z', 'Z');

export async function queryUsage(store: Store, meter: Meter, q: Omit<UsageQuery, 'meterId' | 'aggregation'>, fromGiven: boolean): Promise<UsageResult> {
  const plan = planUsageQuery({ ...q, meterId: meter.id, aggregation: meter.aggregation }, store.db);
  const rs = await store.ch.query({ query: plan.sql, query_params: plan.params, format: 'JSONEachRow' });
  const rows = await rs.json<Record<string, string>>();
  const data: UsageRow[] = [];
  for (const r of rows) {
    if (r.row_count === '0') continue;
    const groupBy: Record<string, string> = {};
    q.groupBy.forEach((key, i) => {
      if (key !== 'subject') groupBy[key] = r[plan.groupColumns[i]!] ?? '';
    });
    const value =
      meter.aggregation === 'AVG'
        ? new Decimal(r.total!).div(r.row_count!).toDecimalPlaces(AVG_SCALE, Decimal.ROUND_HALF_UP).toFixed()
        : new Decimal(r.total!).toFixed();
    data.push({
      value,
      windowStart: q.windowSize ? iso(r.window_start_s!) : fromGiven ? new Date(q.fromMs).toISOString() : iso(r.window_start_s!),
      windowEnd: q.windowSize ? iso(r.window_end_s!) : new Date(q.toMs).toISOString(),
      subject: q.groupBy.includes('subject') ? (r.g_subject ?? null) : q.subjects.length === 1 ? q.subjects[0]! : null,
      groupBy,
    });
  }
  return {
    ...(fromGiven ? { from: new Date(q.fromMs).toISOString() } : {}),
    to: new Date(q.toMs).toISOString(),
    ...(q.windowSize ? { windowSize: q.windowSize } : {}),
    data,
    source: plan.source,
  };
}

/** The rollups every reader uses (sql/006_rollups_v2.sql): sum states over Decimal(76, 9). */
export const ROLLUP_TABLES = ['meter_usage_1m_v2', 'meter_usage_1h_v2', 'meter_usage_1d_v2'] as const;
export type RollupTable = (typeof ROLLUP_TABLES)[number];

/** event_keys keeps a key 31 days after `ingested_at` (sql/001); keys closer than an hour to expiry are not checked. */
const KEYS_KEPT = 'now64(3) - INTERVAL 31 DAY + INTERVAL 1 HOUR';

export interface ReconcileLine {
  meter: string;
  /** Raw events of the meter's event type in the range (whether or not the meter counts them). */
  rawEvents: string;
  /** Per-event values the meter holds (events it counted). */
  values: { count: string; sum: string };
  rollups: Record<RollupTable, { count: string; sum: string }>;
  /** Distinct raw events of the type with no value for this meter (filtered out, or not countable): informational. */
  uncounted: string;
  /** (1) Rows of `events_raw` of the meter's type in the range beyond one per (source, id). */
  rawDuplicates: string;
  /** (2) Rows of `meter_values` of the meter beyond one per (source, id). */
  valueDuplicates: string;
  /** (3) Events whose own `meter_values` array names the meter but that have no row in `meter_values` (a lost write). */
  missingValues: string;
  /** (4) Rows of `meter_values` of the meter with no `events_raw` row. */
  orphanValues: string;
  /** (5) Events of the type, ingested within event_keys' TTL (31 days, less an hour), whose key is not in `event_keys` (the dedup look-up would miss them). */
  missingKeys: string;
  /** False if any of (1)-(5) is non-zero, if (6) a rollup's count or sum differs from `meter_values`, or more events were counted than exist. */
  ok: boolean;
}

/**
 * Proves exactly-once per event for each meter over [from, to) (whole UTC days), optionally for
 * one subject: no duplicate raw events or values, no event that names the meter without its
 * value, no value without its event, every recent key in `event_keys`, and every rollup's count
 * and sum equal to the per-event values (sums in Decimal(76, 9), so they cannot wrap).
 *
 * Cost: per meter, nine queries over the range: scans of `events_raw` (of the type) and
 * `meter_values` (of the meter), and three anti-joins whose right side is held in memory: the
 * meter's (source, id) keys in the range, the type's raw keys in the range, and their keys in
 * `event_keys` (read by primary key). Memory grows with the events in the range (~100 bytes a
 * key); reconcile a month at a time on large tenants.
 */
export async function reconcile(store: Store, meters: Meter[], opts: { fromMs: number; toMs: number; subject?: string }): Promise<ReconcileLine[]> {
  const { ch, db } = store;
  const params = { from: opts.fromMs, to: opts.toMs, subject: opts.subject ?? '' };
  const subj = opts.subject ? 'AND subject = {subject:String}' : '';
  const range = (col: string) => `${col} >= fromUnixTimestamp64Milli({from:Int64}, 'UTC') AND ${col} < fromUnixTimestamp64Milli({to:Int64}, 'UTC') ${subj}`;
  const out: ReconcileLine[] = [];
  for (const m of meters) {
    const p = { ...params, meterId: m.id, type: m.eventType };
    const one = async (sql: string) => {
      const rs = await ch.query({ query: sql, query_params: p, format: 'JSONEachRow' });
      return (await rs.json<Record<string, string>>())[0] ?? {};
    };
    const n = async (sql: string) => (await one(sql)).n ?? '0';
    const values = await one(
      `SELECT toString(count()) AS count, toString(sum(toDecimal256(value, 9))) AS sum, toString(uniqExact(source, id)) AS keys, toString(count() - uniqExact(source, id)) AS dup
       FROM ${db}.meter_values WHERE meter_id = {meterId:String} AND ${range('time')}`,
    );
    const rollups = {} as ReconcileLine['rollups'];
    for (const t of ROLLUP_TABLES) {
      const r = await one(`SELECT toString(countMerge(value_count)) AS count, toString(sumMerge(value_sum)) AS sum FROM ${db}.${t} WHERE meter_id = {meterId:String} AND ${range('window_start')}`);
      rollups[t] = { count: r.count ?? '0', sum: new Decimal(r.sum ?? '0').toFixed() };
    }
    const raw = await one(
      `SELECT toString(count()) AS count, toString(uniqExact(source, id)) AS keys, toString(count() - uniqExact(source, id)) AS dup
       FROM ${db}.events_raw WHERE type = {type:String} AND ${range('time')}`,
    );
    const missingValues = await n(
      `SELECT toString(uniqExact(source, id)) AS n FROM ${db}.events_raw
       WHERE ${range('time')} AND has(meter_values.meter_id, {meterId:String})
         AND (source, id) NOT IN (SELECT source, id FROM ${db}.meter_values WHERE meter_id = {meterId:String} AND ${range('time')})`,
    );
    // A value's event is of the meter's type (counted live or backfilled) or names the meter.
    const orphanValues = await n(
      `SELECT toString(count()) AS n FROM ${db}.meter_values
       WHERE meter_id = {meterId:String} AND ${range('time')}
         AND (source, id) NOT IN (SELECT source, id FROM ${db}.events_raw WHERE (type = {type:String} OR has(meter_values.meter_id, {meterId:String})) AND ${range('time')})`,
    );
    const recentRaw = `SELECT source, id FROM ${db}.events_raw WHERE type = {type:String} AND ${range('time')} AND ingested_at > ${KEYS_KEPT}`;
    const missingKeys = await n(
      `SELECT toString(uniqExact(source, id)) AS n FROM ${db}.events_raw
       WHERE type = {type:String} AND ${range('time')} AND ingested_at > ${KEYS_KEPT}
         AND (source, id) NOT IN (SELECT source, id FROM ${db}.event_keys WHERE (source, id) IN (${recentRaw}))`,
    );
    const v = { count: values.count ?? '0', sum: new Decimal(values.sum ?? '0').toFixed() };
    const uncounted = Math.max(0, Number(raw.keys ?? 0) - Number(values.keys ?? 0));
    const line = { rawDuplicates: raw.dup ?? '0', valueDuplicates: values.dup ?? '0', missingValues, orphanValues, missingKeys };
    const ok =
      Object.values(line).every((x) => x === '0') &&
      Object.values(rollups).every((r) => r.count === v.count && r.sum === v.sum) &&
      Number(v.count) <= Number(raw.count ?? 0);
    out.push({ meter: m.slug, rawEvents: raw.count ?? '0', values: v, rollups, uncounted: String(uncounted), ...line, ok });
  }
  return out;
}

// ---- repair ------------------------------------------------------------------------------------

/** The lease repair holds; the processor waits while anyone holds it before each insert. */
export { MAINTENANCE_LEASE };

export interface RepairDeps {
  store: Store;
  leases: Leases;
  logger?: Logger;
  /** How long no INSERT into the database may run before repair starts (default 2 s). */
  quietMs?: number;
  /** How long to wait for that quiet before refusing (default 60 s). */
  waitMs?: number;
}

export interface RepairStep {
  step: 'wait-for-writers' | 'deduplicate-events_raw' | 'deduplicate-meter_values' | 'insert-missing-values' | 'insert-missing-keys' | `rebuild-${RollupTable}`;
  /** What the step found to do, when it counts anything: duplicate rows, missing rows, months rewritten. */
  detail?: Record<string, string | string[]>;
  ms: number;
}

export interface RepairResult {
  from: string;
  to: string;
  meters: string[];
  steps: RepairStep[];
  /** Reconcile over the range before and after the repair. */
  before: ReconcileLine[];
  after: ReconcileLine[];
  ok: boolean;
}

/** Partition ids (`toYYYYMM`) of the months [fromMs, toMs) touches. */
export function monthPartitions(fromMs: number, toMs: number): string[] {
  const out: string[] = [];
  const d = new Date(fromMs);
  for (let y = d.getUTCFullYear(), mo = d.getUTCMonth(); Date.UTC(y, mo, 1) < toMs; mo === 11 ? (y++, (mo = 0)) : mo++) {
    out.push(`${y}${String(mo + 1).padStart(2, '0')}`);
  }
  return out;
}

/**
 * Restores exactness for [fromMs, toMs) (whole UTC days) for `meters` (duplicates are removed for
 * every meter and event type, since they are never legitimate). Holds the lease
 * `maintenance.writes` (the processor does not insert while it is held), then waits until no
 * INSERT into the database has run for `quietMs`, then, in order:
 *
 * 1. removes duplicate rows from `events_raw` and `meter_values` (`OPTIMIZE ... PARTITION ...
 *    FINAL DEDUPLICATE BY <sorting key>`, only for months holding duplicates: it rewrites the
 *    month's partition, and the views do not fire on a merge);
 * 2. inserts the `meter_values` rows named by `events_raw`'s arrays but missing (through
 *    `meter_values`, whose views feed the rollups);
 * 3. inserts the `event_keys` missing for events ingested within the keys' TTL;
 * 4. rebuilds each rollup's cells of the range for the meters: deletes them (a synchronous
 *    mutation) and inserts the states computed from `meter_values` by the view's own SELECT;
 *
 * then reconciles. Every step recomputes what is missing, so a repair cut off halfway is finished
 * by running it again. Reads of the range may see a rollup without its cells between the delete
 * and the insert of step 4. Single node only: on a cluster the mutations and inserts would have to
 * target each shard's local tables.
 */
export async function repair(deps: RepairDeps, meters: Meter[], opts: { fromMs: number; toMs: number }): Promise<RepairResult> {
  const held = await deps.leases.withLease(MAINTENANCE_LEASE, () => repairHeld(deps, meters, opts), deps.logger);
  if (!held.ran) {
    const holder = await deps.leases.holderOf(MAINTENANCE_LEASE).catch(() => undefined);
    throw new AppError('REPAIR_BUSY', `another repair or maintenance task holds the lease ${MAINTENANCE_LEASE}; retry when it has finished`, { details: { lease: MAINTENANCE_LEASE, ...(holder ? { holder } : {}) } });
  }
  return held.value;
}

async function repairHeld(deps: RepairDeps, meters: Meter[], opts: { fromMs: number; toMs: number }): Promise<RepairResult> {
  const { store } = deps;
  const { ch, db } = store;
  const steps: RepairStep[] = [];
  const timed = async (step: RepairStep['step'], fn: () => Promise<RepairStep['detail'] | void>) => {
    const t0 = Date.now();
    const detail = await fn();
    steps.push({ step, ...(detail ? { detail } : {}), ms: Date.now() - t0 });
  };

  await timed('wait-for-writers', () => waitForNoInserts(store, deps.quietMs ?? 2_000, deps.waitMs ?? 60_000));
  const before = await reconcile(store, meters, opts);

  const ids = meters.map((m) => m.id);
  const params = { from: opts.fromMs, to: opts.toMs, ids };
  const range = (col: string) => `${col} >= fromUnixTimestamp64Milli({from:Int64}, 'UTC') AND ${col} < fromUnixTimestamp64Milli({to:Int64}, 'UTC')`;
  const rows = async (query: string) => (await ch.query({ query, query_params: params, format: 'JSONEachRow' })).json<Record<string, string>>();
  // Our own inserts recompute exactly what is missing; block deduplication must not drop them.
  const insertSettings = { insert_deduplicate: 0, insert_deduplication_token: '' } as const;

  const dedupe = async (table: 'events_raw' | 'meter_values', key: string, by: string) => {
    const dup = await rows(
      `SELECT toString(toYYYYMM(time)) AS month, toString(count() - uniqExact(${key})) AS n FROM ${db}.${table} WHERE ${range('time')} GROUP BY month HAVING count() > uniqExact(${key}) ORDER BY month`,
    );
    for (const d of dup) await ch.command({ query: `OPTIMIZE TABLE ${db}.${table} PARTITION ID '${d.month!.replace(/\D/g, '')}' FINAL DEDUPLICATE BY ${by}` });
    return { duplicateRows: String(dup.reduce((a, d) => a + Number(d.n), 0)), monthsRewritten: dup.map((d) => d.month!) };
  };
  await timed('deduplicate-events_raw', () => dedupe('events_raw', 'source, id', 'subject, type, time, source, id'));
  await timed('deduplicate-meter_values', () => dedupe('meter_values', 'meter_id, source, id', 'meter_id, subject, time, source, id'));

  await timed('insert-missing-values', async () => {
    const missing = `FROM ${db}.events_raw ARRAY JOIN meter_values AS mv
       WHERE ${range('time')} AND mv.meter_id IN {ids:Array(String)}
         AND (mv.meter_id, source, id) NOT IN (SELECT meter_id, source, id FROM ${db}.meter_values WHERE meter_id IN {ids:Array(String)} AND ${range('time')})`;
    const [c] = await rows(`SELECT toString(count()) AS n ${missing}`);
    if (c?.n !== '0') {
      await ch.command({
        query: `INSERT INTO ${db}.meter_values (meter_id, subject, time, ingested_at, source, id, value, value_key, group_by)
                SELECT mv.meter_id, subject, time, ingested_at, source, id, mv.value, mv.value_key, mv.group_by ${missing}`,
        query_params: params,
        clickhouse_settings: insertSettings,
      });
    }
    return { inserted: c?.n ?? '0' };
  });

  await timed('insert-missing-keys', async () => {
    const inRange = `SELECT source, id FROM ${db}.events_raw WHERE ${range('time')}`;
    const missing = `FROM ${db}.events_raw WHERE ${range('time')} AND ingested_at > ${KEYS_KEPT}
         AND (source, id) NOT IN (SELECT source, id FROM ${db}.event_keys WHERE (source, id) IN (${inRange}))`;
    const [c] = await rows(`SELECT toString(uniqExact(source, id)) AS n ${missing}`);
    if (c?.n !== '0') {
      await ch.command({
        query: `INSERT INTO ${db}.event_keys (source, id, ingested_at) SELECT source, id, min(ingested_at) ${missing} GROUP BY source, id`,
        query_params: params,
        clickhouse_settings: insertSettings,
      });
    }
    return { inserted: c?.n ?? '0' };
  });

  const views = await (
    await ch.query({ query: `SELECT name, as_select FROM system.tables WHERE database = {db:String} AND engine = 'MaterializedView'`, query_params: { db }, format: 'JSONEachRow' })
  ).json<{ name: string; as_select: string }>();
  for (const table of ROLLUP_TABLES) {
    await timed(`rebuild-${table}`, async () => {
      // The view's own SELECT, over the range's values: the cells come out as the view makes them.
      const from = `FROM ${db}.meter_values`;
      const view = views.find((v) => v.name === `${table}_mv`);
      if (!view || view.as_select.split(from).length !== 2) throw new AppError('INTERNAL', `cannot rebuild ${table}: its view ${table}_mv is missing or does not read ${db}.meter_values once`);
      const select = view.as_select.replace(from, `FROM (SELECT * ${from} WHERE meter_id IN {ids:Array(String)} AND ${range('time')})`);
      const cols = (
        await (await ch.query({ query: `SELECT name FROM system.columns WHERE database = {db:String} AND table = {t:String} ORDER BY position`, query_params: { db, t: table }, format: 'JSONEachRow' })).json<{ name: string }>()
      ).map((c) => c.name).join(', ');
      await ch.command({
        query: `ALTER TABLE ${db}.${table} DELETE WHERE meter_id IN {ids:Array(String)} AND ${range('window_start')}`,
        query_params: params,
        clickhouse_settings: { mutations_sync: '2' },
      });
      await ch.command({ query: `INSERT INTO ${db}.${table} (${cols}) SELECT ${cols} FROM (${select})`, query_params: params, clickhouse_settings: insertSettings });
    });
  }

  const after = await reconcile(store, meters, opts);
  return { from: new Date(opts.fromMs).toISOString(), to: new Date(opts.toMs).toISOString(), meters: meters.map((m) => m.slug), steps, before, after, ok: after.every((l) => l.ok) };
}

/** Waits until `system.processes` shows no INSERT into the database for `quietMs` in a row; refuses after `waitMs`. */
async function waitForNoInserts(store: Store, quietMs: number, waitMs: number): Promise<Record<string, string>> {
  const started = Date.now();
  let quietSince: number | undefined;
  for (;;) {
    const rs = await store.ch.query({
      query: `SELECT toString(count()) AS n FROM system.processes
              WHERE query_kind = 'Insert' AND (current_database = {db:String} OR positionCaseInsensitive(query, {qualified:String}) > 0)`,
      query_params: { db: store.db, qualified: `${store.db}.` },
      format: 'JSONEachRow',
    });
    const running = Number((await rs.json<{ n: string }>())[0]?.n ?? 0);
    const now = Date.now();
    if (running > 0) quietSince = undefined;
    else quietSince ??= now;
    if (quietSince !== undefined && now - quietSince >= quietMs) return { waitedMs: String(now - started) };
    if (now - started >= waitMs) {
      throw new AppError('REPAIR_BUSY', `inserts into ${store.db} were still running after ${Math.round(waitMs / 1000)} s; repair touched nothing. Stop the writers (or check that every processor honours the lease ${MAINTENANCE_LEASE}) and retry`, {
        details: { runningInserts: running, waitedMs: now - started },
      });
    }
    await new Promise((r) => setTimeout(r, Math.min(250, quietMs)));
  }
}
