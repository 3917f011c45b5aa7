import fs from 'node:fs';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Decimal as BaseDecimal } from 'decimal.js';
import { ClickHouseError, createClient } from '@clickhouse/client';
import { migrate, openStore, SQL_DIR, type Store } from '../common/clickhouse.ts';
import { silentLogger } from '../common/logger.ts';
import type { NatsServerHandle } from '../common/nats-server.ts';
import { startStoreServer, type StoreServer } from '../store-server/index.ts';
import { client, total } from './api-client.ts';
import { ce, eventually, randomDatabase, startTestNats, startTestRuntime, tempDir, testConfig, type TestRuntime } from './harness.ts';

/**
 * `meterline store`: real ClickHouse (chDB) behind ClickHouse's HTTP interface. Everything here
 * goes through `@clickhouse/client` over HTTP, the code path Meterline uses for a server.
 * chDB binds one data directory per process, so every server in this file shares one.
 */
const DATA_DIR = tempDir('meterline-store-');
/** Decimal(38, 9) needs 38 significant digits (decimal.js keeps 20 by default). */
const Decimal = BaseDecimal.clone({ precision: 60 });
const HOUR = 3_600_000;
const T0 = Date.UTC(2026, 10, 2, 10, 0, 0);

/** A row of `events_raw` as the processor sends it (processor/processor.ts `insert`). */
function rawRow(seq: number, subject: string, value: string, timeMs: number, user: string) {
  return {
    source: 'store-test',
    id: `ev-${seq}`,
    type: 'usage',
    subject,
    time: timeMs,
    ingested_at: T0 + HOUR,
    received_at: T0 + HOUR,
    data: JSON.stringify({ v: value, user }),
    stream_seq: seq,
    meter_values: [{ meter_id: 'm-store', value, value_key: user, group_by: { region: 'eu' } }],
  };
}

async function insertBatch(store: Store, rows: ReturnType<typeof rawRow>[], token: string) {
  await store.ch.insert({
    table: `${store.db}.events_raw`,
    values: rows,
    format: 'JSONEachRow',
    clickhouse_settings: { insert_deduplication_token: token, deduplicate_blocks_in_dependent_materialized_views: 1, date_time_input_format: 'best_effort' },
  });
}

async function rows<T>(store: Store, query: string, query_params?: Record<string, unknown>): Promise<T[]> {
  const rs = await store.ch.query({ query, format: 'JSONEachRow', ...(query_params ? { query_params } : {}) });
  return rs.json<T>();
}

async function clickhouseError(p: Promise<unknown>): Promise<ClickHouseError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof ClickHouseError) return err;
    throw new Error(`expected a ClickHouseError, got ${String(err)}`);
  }
  throw new Error('expected a ClickHouseError, the call succeeded');
}

describe('meterline store: chDB over the ClickHouse HTTP interface', () => {
  let server: StoreServer;
  let store: Store;
  const db = randomDatabase();

  beforeAll(async () => {
    server = await startStoreServer({ dataDir: DATA_DIR, logger: silentLogger() });
    store = await openStore({ url: server.url, dataDir: tempDir(), db });
  });
  afterAll(async () => {
    await store?.close();
    await server?.close();
    fs.rmSync(DATA_DIR, { recursive: true, force: true });
  });

  it('answers /ping and the client ping', async () => {
    const res = await fetch(`${server.url}/ping`);
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('Ok.\n');
    expect(await store.ch.ping()).toEqual({ success: true });
    expect(await store.ch.ping({ select: true })).toEqual({ success: true });
  });

  it('applies every migration, and a second run applies none', async () => {
    const files = fs.readdirSync(SQL_DIR).filter((f) => /^\d{3}_.+\.sql$/.test(f)).sort();
    expect(await migrate(store, silentLogger())).toEqual(files);
    expect(await migrate(store, silentLogger())).toEqual([]);
  });

  it('an insert into events_raw reaches per-event values and the rollups exactly; a retried insert is stored once', async () => {
    const values = [
      ['acme', '0.000000001', T0 + 60_000, 'u1'],
      ['acme', '12345678901234567890.123456789', T0 + 61_000, 'u2'],
      ['acme', '2.5', T0 + 30 * 60_000, 'u1'],
      ['globex', '7', T0 + 5 * 60_000, 'u3'],
      ['globex', '-1.25', T0 + 2 * HOUR, 'u3'],
    ] as const;
    const batch = values.map(([subject, v, t, user], i) => rawRow(i + 1, subject, v, t, user));
    await insertBatch(store, batch, 'EVENTS:1-5:5');
    await insertBatch(store, batch, 'EVENTS:1-5:5'); // the processor retrying a batch that did land

    const raw = await rows<{ n: string }>(store, `SELECT count() AS n FROM ${db}.events_raw`);
    expect(raw).toEqual([{ n: '5' }]);
    const perEvent = await rows<{ n: string }>(store, `SELECT count() AS n FROM ${db}.meter_values`);
    expect(perEvent).toEqual([{ n: '5' }]);

    const want = (subject: string) => {
      const mine = values.filter((x) => x[0] === subject);
      const ds = mine.map((x) => new Decimal(x[1]));
      const latest = [...mine].sort((a, b) => a[2] - b[2]).at(-1)!;
      return {
        subject,
        sum: ds.reduce((a, b) => a.plus(b), new Decimal(0)).toFixed(),
        count: String(mine.length),
        min: Decimal.min(...ds).toFixed(),
        max: Decimal.max(...ds).toFixed(),
        uniq: String(new Set(mine.map((x) => x[3])).size),
        latest: new Decimal(latest[1]).toFixed(),
      };
    };
    for (const table of ['meter_usage_1m_v2', 'meter_usage_1h_v2', 'meter_usage_1d_v2']) {
      const got = await rows(
        store,
        `SELECT subject, toString(sumMerge(value_sum)) AS sum, countMerge(value_count) AS count, toString(minMerge(value_min)) AS min, toString(maxMerge(value_max)) AS max,
                uniqExactMerge(value_unique) AS uniq, toString(argMaxMerge(value_latest)) AS latest
         FROM ${db}.${table} WHERE meter_id = {meter:String} GROUP BY subject ORDER BY subject`,
        { meter: 'm-store' },
      );
      expect(got, table).toEqual([want('acme'), want('globex')]);
    }
    const hours = await rows<{ w: string; n: string }>(store, `SELECT toString(window_start) AS w, countMerge(value_count) AS n FROM ${db}.meter_usage_1h_v2 GROUP BY w ORDER BY w`);
    expect(hours).toEqual([
      { w: '2026-11-02 10:00:00', n: '4' },
      { w: '2026-11-02 12:00:00', n: '1' },
    ]);
  });

  it('settings belong to one request: an insert after a deduplicated one is not mistaken for it', async () => {
    await store.ch.command({ query: `CREATE TABLE ${db}.probe (k String, n Int64) ENGINE = MergeTree ORDER BY k SETTINGS non_replicated_deduplication_window = 1000` });
    const insert = (k: string, token?: string) =>
      store.ch.insert({ table: `${db}.probe`, values: [{ k, n: 1 }], format: 'JSONEachRow', ...(token ? { clickhouse_settings: { insert_deduplication_token: token } } : {}) });
    await insert('first', 'T1');
    await insert('first again', 'T1'); // same token: deduplicated
    await insert('second'); // no token: a block of its own
    await insert('third');
    expect(await rows(store, `SELECT k FROM ${db}.probe ORDER BY k`)).toEqual([{ k: 'first' }, { k: 'second' }, { k: 'third' }]);
  });

  it('binds query parameters of several types exactly', async () => {
    const params = {
      s: "it's a\ttab, a\nnewline, a \\ backslash and ünïcödé",
      arr: ["quote ' inside", 'back\\slash', 'comma, inside', ''],
      big: 9223372036854775807n,
      neg: '-9223372036854775808',
      t: new Date('2026-11-02T10:11:12.345Z'),
      d: '12345678901234567890.123456789',
      none: null,
    };
    const got = await rows(
      store,
      `SELECT {s:String} AS s, {arr:Array(String)} AS arr, {big:Int64} AS big, {neg:Int64} AS neg, {t:DateTime64(3, 'UTC')} AS t,
              toString({d:Decimal(38, 9)}) AS d, {none:Nullable(String)} AS none`,
      params,
    );
    expect(got).toEqual([{ s: params.s, arr: params.arr, big: '9223372036854775807', neg: '-9223372036854775808', t: '2026-11-02 10:11:12.345', d: params.d, none: null }]);
  });

  it('a bad query or a rejected insert is a ClickHouseError with the code and type ClickHouse uses', async () => {
    const syntax = await clickhouseError(store.ch.query({ query: 'SELEC 1' }));
    expect({ code: syntax.code, type: syntax.type }).toEqual({ code: '62', type: 'SYNTAX_ERROR' });
    const table = await clickhouseError(store.ch.query({ query: `SELECT * FROM ${db}.no_such_table` }));
    expect({ code: table.code, type: table.type }).toEqual({ code: '60', type: 'UNKNOWN_TABLE' });
    const param = await clickhouseError(store.ch.query({ query: 'SELECT {x:Int64}', query_params: { x: 'abc' } }));
    expect(param.type).toBe('BAD_QUERY_PARAMETER');
    const insert = await clickhouseError(store.ch.insert({ table: `${db}.probe`, values: [{ k: 'x', n: 'not a number' }], format: 'JSONEachRow' }));
    expect(insert.code).toMatch(/^\d+$/);
    expect(insert.type).toMatch(/^[A-Z_]+$/);
    const setting = await clickhouseError(store.ch.query({ query: 'SELECT 1', clickhouse_settings: { no_such_setting: 1 } as never }));
    expect(setting.type).toBe('UNKNOWN_SETTING');
    // GET requests are read-only, as on a server.
    const res = await fetch(`${server.url}/?query=${encodeURIComponent(`CREATE TABLE ${db}.nope (x UInt8) ENGINE = Memory`)}`);
    expect(res.status).toBe(403);
    expect(res.headers.get('x-clickhouse-exception-code')).toBe('164');
  });

  it('serves two clients in parallel, each seeing its own parameters and settings', async () => {
    const other = await openStore({ url: server.url, dataDir: tempDir(), db });
    try {
      await store.ch.command({ query: `CREATE TABLE ${db}.parallel (client String, i UInt32) ENGINE = MergeTree ORDER BY (client, i)` });
      const work = (s: Store, name: string) =>
        Promise.all(
          Array.from({ length: 10 }, async (_, i) => {
            await s.ch.insert({ table: `${db}.parallel`, values: [{ client: name, i }], format: 'JSONEachRow', clickhouse_settings: { insert_deduplication_token: `${name}-${i}` } });
            const [r] = await rows<{ who: string; i: string; token: string }>(s, `SELECT {who:String} AS who, {i:UInt32} AS i, getSetting('insert_deduplication_token') AS token`, { who: name, i });
            expect(r).toEqual({ who: name, i: i, token: '' });
          }),
        );
      await Promise.all([work(store, 'a'), work(other, 'b')]);
      expect(await rows(store, `SELECT client, count() AS n FROM ${db}.parallel GROUP BY client ORDER BY client`)).toEqual([
        { client: 'a', n: '10' },
        { client: 'b', n: '10' },
      ]);
    } finally {
      await other.close();
    }
  });

  it('reads gzip request bodies, compresses responses on request, and takes parameters as multipart', async () => {
    const ch = createClient({ url: server.url, compression: { request: true, response: true }, use_multipart_params: true });
    try {
      await ch.insert({ table: `${db}.probe`, values: [{ k: 'gzipped', n: 2 }], format: 'JSONEachRow' });
      const rs = await ch.query({ query: `SELECT k, n FROM ${db}.probe WHERE k = {k:String}`, query_params: { k: 'gzipped' }, format: 'JSONEachRow' });
      expect(await rs.json()).toEqual([{ k: 'gzipped', n: 2 }]);
      // An empty insert stream inserts nothing and succeeds, as on a server.
      await ch.exec({ query: `INSERT INTO ${db}.probe FORMAT JSONEachRow`, values: Readable.from([]) });
    } finally {
      await ch.close();
    }
  });

  it('keeps an HTTP session (session_id) across requests', async () => {
    const session_id = `s-${Date.now()}`;
    await store.ch.command({ query: 'CREATE TEMPORARY TABLE tmp (x UInt8)', session_id });
    await store.ch.command({ query: 'INSERT INTO tmp VALUES (1), (2)', session_id });
    const rs = await store.ch.query({ query: 'SELECT sum(x) AS s FROM tmp', format: 'JSONEachRow', session_id });
    expect(await rs.json()).toEqual([{ s: '3' }]);
    const missing = await clickhouseError(store.ch.query({ query: 'SELECT sum(x) FROM tmp' }));
    expect(missing.type).toBe('UNKNOWN_TABLE');
  });

  it('requires the password when one is set, and refuses a non-loopback address without one', async () => {
    await expect(startStoreServer({ dataDir: DATA_DIR, host: '0.0.0.0', logger: silentLogger() })).rejects.toThrow(/without a password/);
    const locked = await startStoreServer({ dataDir: DATA_DIR, password: 's3cret', logger: silentLogger() });
    try {
      for (const password of [undefined, 'wrong']) {
        const err = await clickhouseError(openStore({ url: locked.url, password, dataDir: tempDir(), db }));
        expect({ code: err.code, type: err.type }).toEqual({ code: '516', type: 'AUTHENTICATION_FAILED' });
      }
      const ok = await openStore({ url: locked.url, password: 's3cret', dataDir: tempDir(), db });
      expect(await rows(ok, `SELECT count() AS n FROM ${db}.events_raw`)).toEqual([{ n: '5' }]);
      await ok.close();
      const viaHeader = await fetch(`${locked.url}/?query=SELECT%201`, { headers: { 'X-ClickHouse-User': 'default', 'X-ClickHouse-Key': 's3cret' } });
      expect(await viaHeader.text()).toBe('1\n');
      expect((await fetch(`${locked.url}/ping`)).status).toBe(200);
    } finally {
      await locked.close();
    }
  });

  it('close() lets a query in flight finish, then refuses connections', async () => {
    const second = await startStoreServer({ dataDir: DATA_DIR, logger: silentLogger() });
    const ch = createClient({ url: second.url });
    try {
      const slow = ch.query({ query: 'SELECT sleep(1) AS z, 42 AS answer', format: 'JSONEachRow' }).then((rs) => rs.json());
      await new Promise((r) => setTimeout(r, 300)); // the query is running
      await second.close();
      expect(await slow).toEqual([{ z: 0, answer: 42 }]);
      const after = await ch.query({ query: 'SELECT 1' }).then(
        () => 'answered',
        (err: unknown) => (err instanceof ClickHouseError ? 'ClickHouseError' : 'unavailable'),
      );
      expect(after).toBe('unavailable');
      await second.close(); // idempotent
    } finally {
      await ch.close();
    }
  });

  describe('the Meterline runtime with CLICKHOUSE_URL pointing at the store', () => {
    let nats: NatsServerHandle;
    let rt: TestRuntime;

    beforeAll(async () => {
      nats = await startTestNats();
      rt = await startTestRuntime(testConfig(nats.url, { CLICKHOUSE_URL: server.url }));
    });
    afterAll(async () => {
      await rt?.stop();
      await nats?.stop();
    });

    it('counts ingested events once, through the store', async () => {
      expect(rt.store?.embedded).toBe(false);
      const c = client(rt.app!, rt.adminKey);
      await c.createMeter({ slug: 'tokens', eventType: 'llm', aggregation: 'SUM', valueProperty: '$.tokens' });
      const ev = (id: string, tokens: string) => ce({ id, type: 'llm', subject: 'via-store', time: '2026-11-02T10:00:00Z', data: { tokens } });
      expect((await c.ingest([ev('a', '1.5'), ev('b', '2.25'), ev('a', '1.5')])).statusCode).toBe(202);
      expect((await c.ingest([ev('b', '2.25'), ev('c', '0.000000001')])).statusCode).toBe(202);
      expect(await eventually(() => total(c, 'tokens', 'via-store'), (v) => v === '3.750000001')).toBe('3.750000001');
    });
  });
});
