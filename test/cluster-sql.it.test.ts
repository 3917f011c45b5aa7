import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Decimal as BaseDecimal } from 'decimal.js';
import { createClient } from '@clickhouse/client';
import { Session } from 'chdb';
import { createChdbConnection } from 'chdb/connection';
import { migrate, migrationPlan, splitStatements, type Store } from '../common/clickhouse.ts';
import { PLACEMENTS } from '../common/cluster-sql.ts';
import { silentLogger } from '../common/logger.ts';
import { planUsageQuery, ROLLUP_AGG, RAW_AGG } from '../usage/index.ts';
import type { Aggregation, Meter } from '../meter/index.ts';
import { Backfiller } from '../processor/index.ts';
import { randomDatabase, tempDir } from './harness.ts';

/**
 * The clustered schema (common/cluster-sql.ts) against ClickHouse itself, as far as one embedded
 * chDB process allows:
 *
 * 1. Parser: every clustered statement, and the output of `meterline migrate --print`, goes
 *    through ClickHouse's own parser (`formatQuery`), which must read back ON CLUSTER, the
 *    Replicated engines with their Keeper paths and the Distributed tables over `<name>_local`.
 * 2. Execution: chDB has no Keeper and refuses ON CLUSTER ("Replicated DDL queries are
 *    disabled"; a Replicated table with the in-memory test keeper hangs). What it does run is a
 *    `remote_servers` cluster of one local shard, so the clustered DDL minus exactly those two
 *    things (ON CLUSTER dropped, `Replicated*MergeTree(path, replica, args)` back to
 *    `*MergeTree(args)` with the same deduplication window) runs here for real: the
 *    Distributed tables, the views on the local tables, inserts through Distributed with the
 *    processor's settings and a retried token, the usage queries and a backfill.
 *
 * Not covered here (no cluster): several shards (partial aggregate states merged across
 * shards, `distributed_product_mode` for the backfill's IN subquery), replication and Keeper,
 * and the distributed DDL queue. sql/README.md says what to check on a real cluster.
 */
const Decimal = BaseDecimal.clone({ precision: 60 });
const CLUSTER = 'meterline_test';
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const HOUR = 3_600_000;
const D0 = Date.UTC(2026, 2, 2);

/** One shard on this host: `is_local`, so chDB writes and reads it without a network hop. */
const CONFIG_XML = `<clickhouse>
  <tcp_port>9000</tcp_port>
  <remote_servers>
    <${CLUSTER}>
      <shard><internal_replication>true</internal_replication><replica><host>localhost</host><port>9000</port></replica></shard>
    </${CLUSTER}>
  </remote_servers>
</clickhouse>
`;

/** The clustered statement minus what needs Keeper: no ON CLUSTER, the non-replicated engine. */
function singleHostForm(statement: string): string {
  return statement
    .replace(/ ON CLUSTER '[^']+'/, '')
    .replace(/\bReplicated(\w*MergeTree)\('[^']*', '\{replica\}'(?:, )?/, '$1(')
    .replace(/\breplicated_deduplication_window = (\d+)(?:, replicated_deduplication_window_seconds = \d+)?/, 'non_replicated_deduplication_window = $1');
}

interface Ev {
  id: string;
  subject: string;
  timeMs: number;
  v: string;
  user: string;
}

function makeEvents(n: number): Ev[] {
  let seed = 11;
  const rand = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  return Array.from({ length: n }, (_, i) => ({
    id: `ev-${i}`,
    subject: ['alpha', 'beta', 'gamma', 'delta'][i % 4]!,
    timeMs: D0 + Math.floor(rand() * 48 * HOUR),
    v: (Math.floor(rand() * 1_000_000) / 1000).toFixed(3),
    user: `u${Math.floor(rand() * 30)}`,
  }));
}

/** Ingested now: `event_keys` keeps keys for 31 days after ingestion (its TTL). */
const INGESTED_AT = Date.now();

/** A row of `events_raw` as the processor sends it (processor/processor.ts `insert`). */
function rawRow(e: Ev, seq: number, meterId: string) {
  return {
    source: 'cluster-test',
    id: e.id,
    type: 'usage',
    subject: e.subject,
    time: e.timeMs,
    ingested_at: INGESTED_AT,
    received_at: INGESTED_AT,
    data: JSON.stringify({ v: e.v, user: e.user }),
    stream_seq: seq,
    meter_values: [{ meter_id: meterId, value: e.v, value_key: e.user, group_by: { user: e.user } }],
  };
}

/** The aggregation computed directly over the events. */
function expected(events: Ev[], agg: Aggregation): string {
  const vals = events.map((e) => new Decimal(e.v));
  switch (agg) {
    case 'SUM':
    case 'AVG':
      return vals.reduce((a, b) => a.plus(b), new Decimal(0)).toFixed();
    case 'COUNT':
      return String(events.length);
    case 'UNIQUE_COUNT':
      return String(new Set(events.map((e) => e.user)).size);
    case 'MIN':
      return Decimal.min(...vals).toFixed();
    case 'MAX':
      return Decimal.max(...vals).toFixed();
    case 'LATEST': {
      const last = [...events].sort((a, b) => a.timeMs - b.timeMs || (a.id < b.id ? -1 : 1)).at(-1)!;
      return new Decimal(last.v).toFixed();
    }
  }
}

const bySubject = (events: Ev[], agg: Aggregation) =>
  Object.fromEntries([...new Set(events.map((e) => e.subject))].sort().map((s) => [s, expected(events.filter((e) => e.subject === s), agg)]));

describe('clustered schema: ClickHouse parser and a one-shard cluster in chDB', () => {
  const db = randomDatabase();
  let session: Session;
  let store: Store;

  const query = async <T>(sql: string, params?: Record<string, unknown>): Promise<T[]> => {
    const rs = await store.ch.query({ query: sql, format: 'JSONEachRow', ...(params ? { query_params: params } : {}) });
    return rs.json<T>();
  };
  const formatted = async (statement: string): Promise<string> => (await query<{ f: string }>('SELECT formatQuery({q:String}) AS f', { q: statement }))[0]!.f;

  beforeAll(() => {
    const dir = tempDir('meterline-cluster-');
    const config = path.join(dir, 'config.xml');
    fs.writeFileSync(config, CONFIG_XML);
    fs.mkdirSync(path.join(dir, 'data'));
    // The session carries the cluster configuration; the client shares its engine (same path).
    session = new Session(path.join(dir, 'data'), { connectionArgs: [`--config-file=${config}`] });
    const ch = createClient({
      connection: createChdbConnection({ path: path.join(dir, 'data') }),
      clickhouse_settings: { output_format_json_quote_decimals: 1, output_format_json_quote_64bit_integers: 1 },
    } as Parameters<typeof createClient>[0]);
    store = { ch, db, embedded: true, close: () => ch.close() };
  });

  afterAll(async () => {
    await store?.close();
    session?.cleanup();
  });

  it('has the one-shard cluster configured', async () => {
    expect(await query('SELECT cluster, shard_num, is_local FROM system.clusters WHERE cluster = {c:String}', { c: CLUSTER })).toEqual([{ cluster: CLUSTER, shard_num: 1, is_local: 1 }]);
  });

  describe('ClickHouse parser', () => {
    const plan = migrationPlan('meterline', { cluster: 'prod_cluster' });
    const statements = [...plan.bootstrap, ...plan.files.flatMap((f) => f.statements)];

    it('parses every clustered statement as ON CLUSTER DDL with replicated engines and Distributed tables over the local ones', async () => {
      const seen = { database: 0, replicated: 0, distributed: 0, views: 0, truncates: 0, inserts: 0, dropViews: 0 };
      for (const st of statements) {
        const f = await formatted(st);
        // Data statements of 006: TRUNCATE and DROP VIEW on every node; the copy runs once, through Distributed tables with a sharding key.
        if (f.startsWith('TRUNCATE') || f.startsWith('DROP VIEW')) {
          expect(f, st).toMatch(/^(TRUNCATE TABLE IF EXISTS meterline\.\w+_local|DROP VIEW IF EXISTS meterline\.\w+_mv) ON CLUSTER prod_cluster$/);
          if (f.startsWith('TRUNCATE')) seen.truncates++;
          else seen.dropViews++;
          continue;
        }
        if (f.startsWith('INSERT')) {
          const table = /^INSERT INTO meterline\.(\w+)/.exec(f)![1]!;
          expect(PLACEMENTS[table]).toMatchObject({ kind: 'sharded', shardingKey: expect.any(String) });
          expect(f).toMatch(/\bFROM meterline\.meter_values\b/);
          seen.inserts++;
          continue;
        }
        expect(f, st).toMatch(/^CREATE (DATABASE|TABLE|MATERIALIZED VIEW) IF NOT EXISTS [\w.]+ ON CLUSTER prod_cluster\b/);
        if (f.startsWith('CREATE DATABASE')) seen.database++;
        else if (f.startsWith('CREATE MATERIALIZED VIEW')) {
          seen.views++;
          expect(f).toMatch(/ TO meterline\.\w+_local\b/);
          expect(f).toMatch(/\bFROM meterline\.\w+_local\b/);
        } else {
          const engine = /\nENGINE = (\w+)\((.*)\)/.exec(f);
          expect(engine, f).not.toBeNull();
          const [, name, args] = engine!;
          const table = /^CREATE TABLE IF NOT EXISTS meterline\.(\w+)/.exec(f)![1]!;
          if (name === 'Distributed') {
            seen.distributed++;
            const p = PLACEMENTS[table];
            expect(p?.kind).toBe('sharded');
            expect(args).toBe(`'prod_cluster', 'meterline', '${table}_local'${p?.kind === 'sharded' && p.shardingKey ? `, ${p.shardingKey}` : ''}`);
          } else {
            seen.replicated++;
            expect(name).toMatch(/^Replicated\w*MergeTree$/);
            const sharded = table.endsWith('_local');
            expect(PLACEMENTS[sharded ? table.slice(0, -'_local'.length) : table]?.kind).toBe(sharded ? 'sharded' : 'everywhere');
            expect(args).toMatch(sharded ? /^'\/clickhouse\/tables\/\{shard\}\/\{database\}\/\{table\}', '\{replica\}'/ : /^'\/clickhouse\/tables\/all\/\{database\}\/\{table\}', '\{replica\}'/);
          }
        }
      }
      const sharded = Object.values(PLACEMENTS).filter((p) => p.kind === 'sharded').length;
      expect(seen).toEqual({ database: 1, replicated: Object.keys(PLACEMENTS).length, distributed: sharded, views: 8, truncates: 3, inserts: 3, dropViews: 3 });
    });

    it('prints with `meterline migrate --print --cluster` exactly the statements migrate runs, each parseable', async () => {
      const env = { ...process.env, CLICKHOUSE_DATABASE: 'meterline', CLICKHOUSE_CLUSTER: '' };
      const run = (...args: string[]) => execFileSync(process.execPath, [path.join(ROOT, 'bin/meterline.mjs'), 'migrate', '--print', ...args], { env, encoding: 'utf8' });
      const records = plan.files.map((f) => `INSERT INTO meterline.schema_migrations (version, name) VALUES (${f.version}, '${f.name}')`);
      const clustered = splitStatements(run('--cluster', 'prod_cluster'));
      expect(clustered).toEqual([...plan.bootstrap, ...plan.files.flatMap((f, i) => [...f.statements, records[i]!])]);
      for (const st of clustered) expect(await formatted(st)).toBeTruthy();
      const single = migrationPlan('meterline');
      expect(splitStatements(run())).toEqual([...single.bootstrap, ...single.files.flatMap((f, i) => [...f.statements, records[i]!])]);
    }, 60_000);
  });

  describe('executed on a one-shard cluster (ON CLUSTER and replication left out)', () => {
    const events = makeEvents(600);
    const METER = 'm-sum';

    beforeAll(async () => {
      const plan = migrationPlan(db, { cluster: CLUSTER });
      for (const st of [...plan.bootstrap, ...plan.files.flatMap((f) => f.statements)]) await store.ch.command({ query: singleHostForm(st) });
    });

    it('creates the local tables, the Distributed tables over them and the views on the local tables', async () => {
      const tables = await query<{ name: string; engine: string; engine_full: string }>('SELECT name, engine, engine_full FROM system.tables WHERE database = {db:String} ORDER BY name', { db });
      const engines = Object.fromEntries(tables.map((t) => [t.name, t.engine]));
      for (const [table, p] of Object.entries(PLACEMENTS)) {
        if (p.kind === 'sharded') {
          expect(engines[table]).toBe('Distributed');
          expect(engines[`${table}_local`]).toMatch(/MergeTree$/);
          expect(tables.find((t) => t.name === table)!.engine_full).toBe(`Distributed('${CLUSTER}', '${db}', '${table}_local'${p.shardingKey ? `, ${p.shardingKey}` : ''})`);
        } else {
          expect(engines[table]).toMatch(/MergeTree$/);
        }
      }
      const deps = await query<{ name: string; dependencies_table: string[] }>(
        'SELECT name, dependencies_table FROM system.tables WHERE database = {db:String} AND length(dependencies_table) > 0 ORDER BY name',
        { db },
      );
      expect(deps.map((d) => ({ ...d, dependencies_table: [...d.dependencies_table].sort() }))).toEqual([
        { name: 'events_raw_local', dependencies_table: ['event_keys_mv', 'meter_values_mv'] },
        { name: 'meter_values_local', dependencies_table: ['meter_usage_1d_v2_mv', 'meter_usage_1h_v2_mv', 'meter_usage_1m_v2_mv'] },
      ]);
    });

    it('counts events inserted through Distributed once, even when a batch is retried with its token', async () => {
      const insert = (batch: Ev[], from: number, token: string) =>
        store.ch.insert({
          table: `${db}.events_raw`,
          values: batch.map((e, i) => rawRow(e, from + i, METER)),
          format: 'JSONEachRow',
          clickhouse_settings: {
            insert_deduplication_token: token,
            deduplicate_blocks_in_dependent_materialized_views: 1,
            date_time_input_format: 'best_effort',
            distributed_foreground_insert: 1,
          },
        });
      await insert(events.slice(0, 250), 1, 'EVENTS:1-250:250');
      await insert(events.slice(250), 251, 'EVENTS:251-600:350');
      await insert(events.slice(0, 250), 1, 'EVENTS:1-250:250'); // the retry of a batch that had landed
      const counts = await query<{ t: string; n: string }>(
        `SELECT 'events_raw' AS t, toString(count()) AS n FROM ${db}.events_raw UNION ALL SELECT 'event_keys', toString(count()) FROM ${db}.event_keys
         UNION ALL SELECT 'meter_values', toString(count()) FROM ${db}.meter_values UNION ALL SELECT 'meter_usage_1m_v2', toString(countMerge(value_count)) FROM ${db}.meter_usage_1m_v2
         UNION ALL SELECT 'meter_usage_1h_v2', toString(countMerge(value_count)) FROM ${db}.meter_usage_1h_v2 UNION ALL SELECT 'meter_usage_1d_v2', toString(countMerge(value_count)) FROM ${db}.meter_usage_1d_v2`,
      );
      expect(Object.fromEntries(counts.map((c) => [c.t, c.n]))).toEqual({ events_raw: '600', event_keys: '600', meter_values: '600', meter_usage_1m_v2: '600', meter_usage_1h_v2: '600', meter_usage_1d_v2: '600' });
    });

    it('answers every aggregation from every rollup through the Distributed tables exactly as the raw events do', async () => {
      for (const agg of ['SUM', 'COUNT', 'UNIQUE_COUNT', 'MIN', 'MAX', 'LATEST'] as const) {
        const want = bySubject(events, agg);
        for (const table of ['meter_usage_1m_v2', 'meter_usage_1h_v2', 'meter_usage_1d_v2'] as const) {
          const got = await query<{ subject: string; v: string }>(`SELECT subject, ${ROLLUP_AGG[agg]} AS v FROM ${db}.${table} WHERE meter_id = {m:String} GROUP BY subject ORDER BY subject`, { m: METER });
          expect(Object.fromEntries(got.map((r) => [r.subject, new Decimal(r.v).toFixed()])), `${agg} from ${table}`).toEqual(want);
        }
        const raw = await query<{ subject: string; v: string }>(`SELECT subject, ${RAW_AGG[agg]} AS v FROM ${db}.meter_values WHERE meter_id = {m:String} GROUP BY subject ORDER BY subject`, { m: METER });
        expect(Object.fromEntries(raw.map((r) => [r.subject, new Decimal(r.v).toFixed()])), `${agg} from meter_values`).toEqual(want);
      }
      // The usage API's own planner, unchanged, over the clustered names.
      const planned = planUsageQuery({ meterId: METER, aggregation: 'SUM', fromMs: D0, toMs: D0 + 2 * 24 * HOUR, timeZone: 'UTC', subjects: [], groupBy: ['subject'], filterGroupBy: {} }, db);
      expect(planned.source).toBe('meter_usage_1d_v2');
      const rows = await query<Record<string, string>>(planned.sql, planned.params);
      expect(Object.fromEntries(rows.map((r) => [r.g_subject, new Decimal(r.total!).toFixed()]))).toEqual(bySubject(events, 'SUM'));
    });

    it('refuses to apply the single-node migrations to the clustered database', async () => {
      await expect(migrate(store, silentLogger())).rejects.toThrow(/CLICKHOUSE_CLUSTER: the database has the clustered schema \(events_raw \(Distributed\)/);
    });

    it('backfills a new meter through the Distributed meter_values into the local rollups', async () => {
      const meter: Meter = { id: 'm-new', slug: 'new', eventType: 'usage', aggregation: 'MAX', valueProperty: '$.v', createdAt: new Date(D0).toISOString() };
      const r = await new Backfiller(store, silentLogger()).run(meter);
      expect(r).toEqual({ inserted: 600, skipped: 0 });
      const again = await new Backfiller(store, silentLogger()).run(meter);
      expect(again).toEqual({ inserted: 0, skipped: 0 });
      const got = await query<{ subject: string; v: string }>(`SELECT subject, ${ROLLUP_AGG.MAX} AS v FROM ${db}.meter_usage_1h_v2 WHERE meter_id = 'm-new' GROUP BY subject ORDER BY subject`);
      expect(Object.fromEntries(got.map((x) => [x.subject, new Decimal(x.v).toFixed()]))).toEqual(bySubject(events, 'MAX'));
    });
  });
});
