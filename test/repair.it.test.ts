import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrate, migrationPlan, SQL_DIR, type Store } from '../common/clickhouse.ts';
import { Decimal } from '../common/decimal.ts';
import { Leases } from '../common/lease.ts';
import { silentLogger } from '../common/logger.ts';
import type { NatsServerHandle } from '../common/nats-server.ts';
import { MAINTENANCE_LEASE, reconcile, repair, type ReconcileLine, type RepairResult } from '../usage/index.ts';
import { client } from './api-client.ts';
import { ce, eventually, randomDatabase, startTestNats, startTestRuntime, tempDir, testConfig, type TestRuntime } from './harness.ts';

/**
 * Exactly once, proved per event and restored: events go in through the real path, then the
 * store is damaged the way crashes and retries would (rollup cells lost, a batch inserted twice
 * with other tokens, values and dedup keys lost); reconcile names each figure, `repair` restores
 * exactness, and the usage API's totals equal the events sent again.
 */
const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const D0 = Date.UTC(2026, 9, 12);
const N = 300;

interface Ev {
  id: string;
  subject: string;
  timeMs: number;
  n: string;
}

const events: Ev[] = Array.from({ length: N }, (_, i) => ({
  id: `ev-${i}`,
  subject: i % 3 === 0 ? 'alpha' : 'beta',
  timeMs: D0 + Math.floor((i * 2 * DAY) / N) + (i % 7) * 1_000,
  n: `${(i * 37) % 1000}.${String(i % 1000).padStart(3, '0')}`,
}));
const sumOf = (evs: Ev[]) => evs.reduce((a, e) => a.plus(e.n), new Decimal(0)).toFixed();
const ids = (from: number, to: number) => events.slice(from, to).map((e) => e.id);

describe('reconcile per event, and repair', () => {
  let nats: NatsServerHandle;
  let rt: TestRuntime;
  let store: Store;
  let c: ReturnType<typeof client>;
  let meterId: string;
  const range = { from: new Date(D0).toISOString(), to: new Date(D0 + 2 * DAY).toISOString() };

  const sql = async (query: string, params: Record<string, unknown> = {}, settings: Record<string, string> = {}) =>
    store.ch.command({ query: query.replaceAll('DB.', `${store.db}.`), query_params: params, clickhouse_settings: settings });
  const line = async (): Promise<ReconcileLine & Record<string, unknown>> => {
    const r = await c.get(`/api/v1/reconcile?from=${range.from}&to=${range.to}&meter=calls`);
    expect(r.statusCode).toBe(200);
    return r.json().meters[0];
  };
  /** Repair through the API; a process without leases wired into the API (cli/runtime.ts) is refused, then the same function runs with the runtime's leases. */
  const runRepair = async (): Promise<RepairResult> => {
    const r = await c.post('/api/v1/repair', { ...range, meter: 'calls' });
    if (r.statusCode === 503 && r.json().code === 'REPAIR_UNAVAILABLE') {
      return repair({ store, leases: rt.leases!, quietMs: 300 }, [rt.meters.list().find((m) => m.slug === 'calls')!], { fromMs: D0, toMs: D0 + 2 * DAY });
    }
    expect(r.statusCode, r.body).toBe(200);
    return r.json();
  };

  beforeAll(async () => {
    nats = await startTestNats();
    rt = await startTestRuntime(testConfig(nats.url, { INGEST_MAX_PAST: '400d' }));
    store = rt.store!;
    c = client(rt.app!, rt.adminKey);
    meterId = (await c.createMeter({ slug: 'calls', eventType: 'call', aggregation: 'SUM', valueProperty: '$.n', groupBy: { region: '$.region' } })).id;
    const toCe = (e: Ev) => ce({ id: e.id, type: 'call', subject: e.subject, time: new Date(e.timeMs).toISOString(), data: { n: e.n, region: Number(e.id.slice(3)) % 2 ? 'eu' : 'us' } });
    for (let i = 0; i < N; i += 50) expect((await c.ingest(events.slice(i, i + 50).map(toCe))).statusCode).toBe(202);
    await eventually(async () => (await c.query('calls', { from: range.from, to: range.to })).data[0]?.value, (v) => v === sumOf(events));
    await eventually(async () => (await line()).rawEvents, (v) => v === String(N));
  }, 120_000);
  afterAll(async () => {
    await rt?.stop();
    await nats?.stop();
  });

  it('is ok for events stored normally, with every figure zero', async () => {
    const l = await line();
    expect(l).toMatchObject({ rawEvents: String(N), values: { count: String(N), sum: sumOf(events) }, uncounted: '0', rawDuplicates: '0', valueDuplicates: '0', missingValues: '0', orphanValues: '0', missingKeys: '0', ok: true });
  });

  it('names each kind of damage a crash or a retry leaves, and says not ok', async () => {
    // Rollup cells lost: alpha's first day in the hour rollup.
    await sql(`ALTER TABLE DB.meter_usage_1h_v2 DELETE WHERE meter_id = {m:String} AND subject = 'alpha' AND window_start < fromUnixTimestamp64Milli({d:Int64}, 'UTC')`, { m: meterId, d: D0 + DAY }, { mutations_sync: '2' });
    // A batch inserted twice into events_raw under another token (its views fire again).
    await sql(`INSERT INTO DB.events_raw SELECT * FROM DB.events_raw WHERE id IN {ids:Array(String)}`, { ids: ids(0, 20) }, { insert_deduplication_token: 'crash-retry-1' });
    // A batch of values inserted twice into meter_values (its rollup views fire again).
    await sql(`INSERT INTO DB.meter_values SELECT * FROM DB.meter_values WHERE id IN {ids:Array(String)}`, { ids: ids(20, 35) }, { insert_deduplication_token: 'crash-retry-2' });
    // Values lost (the raw events still name the meter), and dedup keys lost.
    await sql(`ALTER TABLE DB.meter_values DELETE WHERE id IN {ids:Array(String)}`, { ids: ids(40, 50) }, { mutations_sync: '2' });
    await sql(`ALTER TABLE DB.event_keys DELETE WHERE id IN {ids:Array(String)}`, { ids: ids(50, 55) }, { mutations_sync: '2' });

    const l = await line();
    const alphaDay0 = events.filter((e) => e.subject === 'alpha' && e.timeMs < D0 + DAY).length;
    expect(l).toMatchObject({
      rawEvents: String(N + 20),
      values: { count: String(N + 20 + 15 - 10) },
      uncounted: '10', // distinct raw events without a value: the ten lost ones
      rawDuplicates: '20',
      valueDuplicates: '35',
      missingValues: '10',
      orphanValues: '0',
      missingKeys: '5',
      ok: false,
    });
    expect(l.rollups.meter_usage_1m_v2.count).toBe(String(N + 35));
    expect(l.rollups.meter_usage_1d_v2.count).toBe(String(N + 35));
    // The cells were deleted before the duplicates arrived: they hold only the duplicates' values.
    expect(l.rollups.meter_usage_1h_v2.count).toBe(String(N + 35 - alphaDay0));
    const cli = await c.get(`/api/v1/reconcile?from=${range.from}&to=${range.to}`);
    expect(cli.json().ok).toBe(false);
  });

  it('refuses to repair while another holder has the maintenance lease, touching nothing', async () => {
    const other = await Leases.open(rt.nats.js, { holder: 'another-repair' });
    const held = await other.withLease(MAINTENANCE_LEASE, () =>
      repair({ store, leases: rt.leases!, quietMs: 100 }, rt.meters.list(), { fromMs: D0, toMs: D0 + 2 * DAY }).then(
        () => 'ran',
        (err: { code?: string; httpStatus?: number }) => `${err.code} ${err.httpStatus}`,
      ),
    );
    expect(held).toEqual({ ran: true, value: 'REPAIR_BUSY 503' });
    expect((await line()).ok).toBe(false);
  });

  it('repair restores exactly-once: reconcile ok and the usage totals equal the events sent', async () => {
    const r = await runRepair();
    expect(r.before[0]).toMatchObject({ rawDuplicates: '20', valueDuplicates: '35', missingValues: '10', missingKeys: '5', ok: false });
    expect(r.steps.map((s) => s.step)).toEqual([
      'wait-for-writers',
      'deduplicate-events_raw',
      'deduplicate-meter_values',
      'insert-missing-values',
      'insert-missing-keys',
      'rebuild-meter_usage_1m_v2',
      'rebuild-meter_usage_1h_v2',
      'rebuild-meter_usage_1d_v2',
    ]);
    expect(r.steps.find((s) => s.step === 'insert-missing-values')?.detail).toEqual({ inserted: '10' });
    expect(r.steps.find((s) => s.step === 'insert-missing-keys')?.detail).toEqual({ inserted: '5' });
    expect(r.ok).toBe(true);

    const l = await line();
    expect(l).toMatchObject({ rawEvents: String(N), values: { count: String(N), sum: sumOf(events) }, uncounted: '0', rawDuplicates: '0', valueDuplicates: '0', missingValues: '0', orphanValues: '0', missingKeys: '0', ok: true });
    for (const t of ['meter_usage_1m_v2', 'meter_usage_1h_v2', 'meter_usage_1d_v2'] as const) expect(l.rollups[t]).toEqual({ count: String(N), sum: sumOf(events) });

    // Every table the usage API reads gives the events' totals per subject and per hour.
    const cases: [number, number, string][] = [
      [D0, D0 + 2 * DAY, 'meter_usage_1d_v2'],
      [D0 + HOUR, D0 + 2 * DAY - HOUR, 'meter_usage_1h_v2'],
      [D0 + 60_000, D0 + 2 * DAY - 60_000, 'meter_usage_1m_v2'],
      [D0 + 1, D0 + 2 * DAY - 1, 'meter_values'],
    ];
    for (const [from, to, source] of cases) {
      const q = await c.query('calls', { from: new Date(from).toISOString(), to: new Date(to).toISOString(), groupBy: 'subject' });
      expect(q.source).toBe(source);
      for (const subject of ['alpha', 'beta']) {
        expect(q.data.find((d) => d.subject === subject)?.value, `${subject} from ${source}`).toBe(sumOf(events.filter((e) => e.subject === subject && e.timeMs >= from && e.timeMs < to)));
      }
    }
    const hourly = await c.query('calls', { ...range, windowSize: 'HOUR', subject: 'alpha' });
    for (const row of hourly.data) {
      const h = Date.parse(row.windowStart);
      expect(row.value).toBe(sumOf(events.filter((e) => e.subject === 'alpha' && e.timeMs >= h && e.timeMs < h + HOUR)));
    }
  });

  it('a second repair finds nothing to do and changes nothing', async () => {
    const r = await runRepair();
    expect(r.before[0]!.ok).toBe(true);
    expect(r.steps.find((s) => s.step === 'deduplicate-events_raw')?.detail).toEqual({ duplicateRows: '0', monthsRewritten: [] });
    expect(r.ok).toBe(true);
    expect((await c.query('calls', range)).data[0]?.value).toBe(sumOf(events));
  });

  it('counts a value without its raw event as an orphan', async () => {
    await sql(
      `INSERT INTO DB.meter_values (meter_id, subject, time, ingested_at, source, id, value, value_key, group_by)
       VALUES ({m:String}, 'alpha', fromUnixTimestamp64Milli({t:Int64}, 'UTC'), now64(3), 'test', 'orphan-1', 5, '', map())`,
      { m: meterId, t: D0 + HOUR },
    );
    expect(await line()).toMatchObject({ orphanValues: '1', ok: false });
    await sql(`ALTER TABLE DB.meter_values DELETE WHERE id = 'orphan-1'`, {}, { mutations_sync: '2' });
    await sql(`ALTER TABLE DB.meter_usage_1m_v2 DELETE WHERE meter_id = {m:String}`, { m: meterId }, { mutations_sync: '2' });
    const r = await runRepair();
    expect(r.ok).toBe(true);
  });
});

describe('migration 006 (wide rollups) over existing data', () => {
  let nats: NatsServerHandle;
  let rt: TestRuntime;

  beforeAll(async () => {
    nats = await startTestNats();
    rt = await startTestRuntime(testConfig(nats.url), ['ingest', 'api']);
  }, 60_000);
  afterAll(async () => {
    await rt?.stop();
    await nats?.stop();
  });

  it('copies the values exactly, and a re-run (a crash before it was recorded) does not double them', async () => {
    const store: Store = { ...rt.store!, db: randomDatabase() };
    await store.ch.command({ query: `CREATE DATABASE ${store.db}` });
    // The schema before 006, with values at the top of the range already in it.
    const old = tempDir('meterline-sql-');
    for (const f of fs.readdirSync(SQL_DIR).filter((f) => /^00[1-5]_.*\.sql$/.test(f))) fs.copyFileSync(path.join(SQL_DIR, f), path.join(old, f));
    await migrate(store, silentLogger(), { dir: old });
    const row = (id: string, v: string) => ({ source: 's', id, type: 'big', subject: 'acme', time: D0 + HOUR, ingested_at: D0 + HOUR, received_at: D0 + HOUR, data: '{}', stream_seq: 1, meter_values: [{ meter_id: 'm1', value: v, value_key: '', group_by: {} }] });
    await store.ch.insert({ table: `${store.db}.events_raw`, values: [row('a', '90000000000000000000000000000'), row('b', '90000000000000000000000000000'), row('c', '0.000000001')], format: 'JSONEachRow', clickhouse_settings: { date_time_input_format: 'best_effort' } });
    const v1 = await (await store.ch.query({ query: `SELECT toString(sumMerge(value_sum)) AS s FROM ${store.db}.meter_usage_1h`, format: 'JSONEachRow' })).json<{ s: string }>();
    expect(v1[0]!.s.startsWith('-')).toBe(true); // the wrap this migration removes

    expect(await migrate(store, silentLogger())).toEqual(['006_rollups_v2.sql']);
    const meter = { id: 'm1', slug: 'm1', eventType: 'big', aggregation: 'SUM' as const, valueProperty: '$.v', createdAt: new Date(D0).toISOString() };
    const check = async () => {
      const [l] = await reconcile(store, [meter], { fromMs: D0, toMs: D0 + DAY });
      expect(l).toMatchObject({ values: { count: '3', sum: '180000000000000000000000000000.000000001' }, ok: true });
      for (const t of ['meter_usage_1m_v2', 'meter_usage_1h_v2', 'meter_usage_1d_v2'] as const) expect(l!.rollups[t]).toEqual({ count: '3', sum: '180000000000000000000000000000.000000001' });
    };
    await check();
    // The old views are gone: a new value reaches only the v2 rollups.
    const views = await (await store.ch.query({ query: `SELECT name FROM system.tables WHERE database = {db:String} AND engine = 'MaterializedView' ORDER BY name`, query_params: { db: store.db }, format: 'JSONEachRow' })).json<{ name: string }>();
    expect(views.map((v) => v.name)).toEqual(['event_keys_mv', 'meter_usage_1d_v2_mv', 'meter_usage_1h_v2_mv', 'meter_usage_1m_v2_mv', 'meter_values_mv']);

    // Crash after the file's statements ran but before it was recorded: the whole file runs again.
    const file = migrationPlan(store.db).files.find((f) => f.name === '006_rollups_v2.sql')!;
    for (const st of file.statements) await store.ch.command({ query: st });
    await check();
    // Crash halfway through the copy of the hour rollup: its rows are partly there, its view not yet.
    await store.ch.command({ query: `DROP VIEW ${store.db}.meter_usage_1h_v2_mv` });
    await store.ch.command({ query: `ALTER TABLE ${store.db}.meter_usage_1h_v2 DELETE WHERE 1 SETTINGS mutations_sync = 2` });
    for (const st of file.statements) await store.ch.command({ query: st });
    await check();
    await store.ch.command({ query: `DROP DATABASE ${store.db}` });
  });
});
