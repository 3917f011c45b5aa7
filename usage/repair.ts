import type { Store } from '../common/clickhouse.ts';
import { AppError } from '../common/errors.ts';
import { MAINTENANCE_LEASE, type Leases } from '../common/lease.ts';
import type { Logger } from '../common/logger.ts';
import type { Meter } from '../meter/index.ts';
import { KEYS_KEPT, reconcile, ROLLUP_TABLES, type ReconcileLine, type RollupTable } from './reconcile.ts';

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
