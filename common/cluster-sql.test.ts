import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { migrationPlan, splitStatements, SQL_DIR } from './clickhouse.ts';
import { clusterStatements, DEDUP_WINDOW_SECONDS, schemaMismatch, EVERYWHERE_KEEPER_PATH, PLACEMENTS, SHARD_BY_SUBJECT, SHARDED_KEEPER_PATH, type Placement } from './cluster-sql.ts';

const DB = 'meterline';
const CLUSTER = 'prod';
const opts = { cluster: CLUSTER, db: DB };

/** Columns between the table name and ENGINE, for comparing a local table with its Distributed one. */
const columnsOf = (statement: string) => statement.slice(statement.indexOf('('), statement.search(/\)\s*ENGINE\s*=/) + 1);
const nameOf = (statement: string) => /^CREATE (?:TABLE|MATERIALIZED VIEW|DATABASE) (?:IF NOT EXISTS )?([\w.]+)/.exec(statement)![1]!;
const engineOf = (statement: string) => /\bENGINE = (\w+)/.exec(statement)?.[1];

describe('the clustered form of every migration in sql/', () => {
  const single = migrationPlan(DB);
  const clustered = migrationPlan(DB, { cluster: CLUSTER });
  const all = [...clustered.bootstrap, ...clustered.files.flatMap((f) => f.statements)];
  const tables = all.filter((s) => s.startsWith('CREATE TABLE'));
  const views = all.filter((s) => s.startsWith('CREATE MATERIALIZED VIEW'));
  const byName = new Map(all.filter((s) => s.startsWith('CREATE')).map((s) => [nameOf(s), s]));
  const inserts = all.filter((s) => s.startsWith('INSERT'));

  it('leaves the single-node statements exactly as the files say', () => {
    for (const f of single.files) {
      expect(f.statements).toEqual(splitStatements(fs.readFileSync(path.join(SQL_DIR, f.name), 'utf8').replaceAll('${DB}', DB)));
    }
    expect(single.bootstrap).toEqual([
      `CREATE TABLE IF NOT EXISTS ${DB}.schema_migrations (version UInt32, name String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) ENGINE = MergeTree ORDER BY version`,
    ]);
    expect(clustered.files.map((f) => f.name)).toEqual(single.files.map((f) => f.name));
  });

  it('creates the database on every node first, then runs every statement ON CLUSTER', () => {
    expect(clustered.bootstrap[0]).toBe(`CREATE DATABASE IF NOT EXISTS ${DB} ON CLUSTER 'prod'`);
    for (const s of all.filter((x) => !x.startsWith('INSERT'))) {
      expect(s).toMatch(/^(CREATE (TABLE|MATERIALIZED VIEW|DATABASE) (IF NOT EXISTS )?|TRUNCATE TABLE (IF EXISTS )?|DROP VIEW (IF EXISTS )?)[\w.]+ ON CLUSTER 'prod'(\s|$)/);
    }
  });

  it('copies into the wide rollups once, through Distributed tables that route by subject, after emptying the local tables', () => {
    expect(inserts.map((s) => /^INSERT INTO ([\w.]+)/.exec(s)![1])).toEqual([`${DB}.meter_usage_1m_v2`, `${DB}.meter_usage_1h_v2`, `${DB}.meter_usage_1d_v2`]);
    for (const s of inserts) expect(s).toContain(`FROM ${DB}.meter_values\nGROUP BY`);
    for (const g of ['1m', '1h', '1d']) {
      expect(PLACEMENTS[`meter_usage_${g}_v2`]).toEqual({ kind: 'sharded', shardingKey: SHARD_BY_SUBJECT });
      const truncate = all.indexOf(`TRUNCATE TABLE IF EXISTS ${DB}.meter_usage_${g}_v2_local ON CLUSTER 'prod'`);
      const insert = all.findIndex((x) => x.startsWith(`INSERT INTO ${DB}.meter_usage_${g}_v2 `));
      const view = all.indexOf(byName.get(`${DB}.meter_usage_${g}_v2_mv`)!);
      expect(truncate).toBeGreaterThan(0);
      expect(truncate).toBeLessThan(insert);
      expect(insert).toBeLessThan(view);
      expect(all).toContain(`DROP VIEW IF EXISTS ${DB}.meter_usage_${g}_mv ON CLUSTER 'prod'`);
    }
  });

  it('gives every table a placement and every placement a table', () => {
    const created = new Set(single.files.flatMap((f) => f.statements).concat(single.bootstrap).filter((s) => s.startsWith('CREATE TABLE')).map((s) => nameOf(s).split('.')[1]!));
    expect(new Set(Object.keys(PLACEMENTS))).toEqual(created);
  });

  it('makes each sharded table a replicated <name>_local per shard behind a Distributed <name>', () => {
    for (const [table, p] of Object.entries(PLACEMENTS)) {
      if (p.kind !== 'sharded') continue;
      const local = byName.get(`${DB}.${table}_local`)!;
      const dist = byName.get(`${DB}.${table}`)!;
      expect(engineOf(local)).toMatch(/^Replicated\w*MergeTree$/);
      expect(local).toContain(`('${SHARDED_KEEPER_PATH}', '{replica}'`);
      expect(engineOf(dist)).toBe('Distributed');
      expect(dist).toContain(`ENGINE = Distributed('prod', '${DB}', '${table}_local'${p.shardingKey ? `, ${p.shardingKey}` : ''})`);
      expect(columnsOf(dist)).toBe(columnsOf(local));
      // The local table comes first: the Distributed one and the views refer to it.
      expect(all.indexOf(local)).toBeLessThan(all.indexOf(dist));
    }
  });

  it('shards an event and its meter values by the same key, so they share a shard', () => {
    expect(PLACEMENTS.events_raw).toEqual({ kind: 'sharded', shardingKey: SHARD_BY_SUBJECT });
    expect(PLACEMENTS.meter_values).toEqual({ kind: 'sharded', shardingKey: SHARD_BY_SUBJECT });
  });

  it('keeps every other table under its own name, replicated to every node', () => {
    for (const [table, p] of Object.entries(PLACEMENTS)) {
      if (p.kind !== 'everywhere') continue;
      const s = byName.get(`${DB}.${table}`)!;
      expect(engineOf(s)).toMatch(/^Replicated\w*MergeTree$/);
      expect(s).toContain(`('${EVERYWHERE_KEEPER_PATH}', '{replica}'`);
      expect(byName.has(`${DB}.${table}_local`)).toBe(false);
    }
    expect(tables.filter((s) => engineOf(s) === 'Distributed')).toHaveLength(Object.values(PLACEMENTS).filter((p) => p.kind === 'sharded').length);
  });

  it('leaves no non-replicated table behind', () => {
    for (const s of tables) expect(engineOf(s)).toMatch(/^(Replicated\w*MergeTree|Distributed)$/);
  });

  it('puts the materialized views on the local tables, so each shard rolls up its own rows', () => {
    expect(views.length).toBeGreaterThan(0);
    for (const v of views) {
      const refs = [...v.matchAll(/\bmeterline\.(\w+)/g)].map((m) => m[1]!).slice(1);
      expect(refs.length).toBeGreaterThanOrEqual(2);
      for (const r of refs) expect(r).toMatch(/_local$/);
    }
    expect(byName.get(`${DB}.meter_usage_1h_mv`)).toContain(`TO ${DB}.meter_usage_1h_local AS`);
    expect(byName.get(`${DB}.meter_usage_1h_mv`)).toContain(`FROM ${DB}.meter_values_local\nGROUP BY`);
    expect(byName.get(`${DB}.meter_values_mv`)).toContain(`FROM ${DB}.events_raw_local ARRAY JOIN`);
    expect(byName.get(`${DB}.meter_usage_1h_v2_mv`)).toContain(`TO ${DB}.meter_usage_1h_v2_local AS`);
    expect(byName.get(`${DB}.meter_usage_1h_v2_mv`)).toContain(`FROM ${DB}.meter_values_local\nGROUP BY`);
  });

  it('keeps engine arguments and the single-node deduplication window', () => {
    expect(byName.get(`${DB}.invoice_sync`)).toContain(`ENGINE = ReplicatedReplacingMergeTree('${EVERYWHERE_KEEPER_PATH}', '{replica}', updated_at)`);
    expect(byName.get(`${DB}.anomalies`)).toContain(`ENGINE = ReplicatedReplacingMergeTree('${EVERYWHERE_KEEPER_PATH}', '{replica}', version)`);
    expect(byName.get(`${DB}.events_raw_local`)).toMatch(
      new RegExp(`ORDER BY \\(subject, type, time, source, id\\)\\nSETTINGS replicated_deduplication_window = 10000, replicated_deduplication_window_seconds = ${DEDUP_WINDOW_SECONDS}$`),
    );
    expect(byName.get(`${DB}.invoices`)).toContain('SETTINGS replicated_deduplication_window = 10000,');
    // No deduplication on one node, none on the cluster.
    expect(byName.get(`${DB}.adjustments`)).toMatch(/\nSETTINGS replicated_deduplication_window = 0$/);
    expect(byName.get(`${DB}.event_keys_local`)).toContain('TTL toDateTime(ingested_at) + INTERVAL 31 DAY\nSETTINGS');
    for (const s of all) expect(s).not.toContain('non_replicated_deduplication_window');
  });
});

describe('clusterStatements', () => {
  const table = (name: string, engine: string, tail = '') => `CREATE TABLE IF NOT EXISTS ${DB}.${name}\n(\n    a String,\n    t DateTime64(3, 'UTC')\n)\nENGINE = ${engine}\nORDER BY a${tail}`;
  const placements: Record<string, Placement> = { s: { kind: 'sharded', shardingKey: 'cityHash64(a)' }, d: { kind: 'sharded', shardingKey: null }, e: { kind: 'everywhere' } };
  const o = { ...opts, placements };

  it.each([
    ['MergeTree', `ReplicatedMergeTree('${SHARDED_KEEPER_PATH}', '{replica}')`],
    ['MergeTree()', `ReplicatedMergeTree('${SHARDED_KEEPER_PATH}', '{replica}')`],
    ['ReplacingMergeTree(t)', `ReplicatedReplacingMergeTree('${SHARDED_KEEPER_PATH}', '{replica}', t)`],
    ['SummingMergeTree((a, b))', `ReplicatedSummingMergeTree('${SHARDED_KEEPER_PATH}', '{replica}', (a, b))`],
    ['AggregatingMergeTree', `ReplicatedAggregatingMergeTree('${SHARDED_KEEPER_PATH}', '{replica}')`],
    ['CollapsingMergeTree(sign)', `ReplicatedCollapsingMergeTree('${SHARDED_KEEPER_PATH}', '{replica}', sign)`],
  ])('replicates %s', (engine, replicated) => {
    const [local, dist] = clusterStatements(table('s', engine), o);
    expect(local).toBe(`CREATE TABLE IF NOT EXISTS ${DB}.s_local ON CLUSTER 'prod'\n(\n    a String,\n    t DateTime64(3, 'UTC')\n)\nENGINE = ${replicated}\nORDER BY a\nSETTINGS replicated_deduplication_window = 0`);
    expect(dist).toBe(`CREATE TABLE IF NOT EXISTS ${DB}.s ON CLUSTER 'prod'\n(\n    a String,\n    t DateTime64(3, 'UTC')\n)\nENGINE = Distributed('prod', '${DB}', 's_local', cityHash64(a))`);
  });

  it('keeps other settings and maps the deduplication window', () => {
    const [local] = clusterStatements(table('e', 'MergeTree', '\nSETTINGS index_granularity = 1024, non_replicated_deduplication_window = 500'), o);
    expect(local).toMatch(new RegExp(`ORDER BY a\\nSETTINGS index_granularity = 1024, replicated_deduplication_window = 500, replicated_deduplication_window_seconds = ${DEDUP_WINDOW_SECONDS}$`));
    expect(local).toContain(`'${EVERYWHERE_KEEPER_PATH}'`);
  });

  it('gives a table fed only by views a Distributed table without sharding key', () => {
    expect(clusterStatements(table('d', 'MergeTree'), o)[1]).toMatch(/ENGINE = Distributed\('prod', 'meterline', 'd_local'\)$/);
  });

  it('accepts a macro as cluster name', () => {
    expect(clusterStatements(table('d', 'MergeTree'), { ...o, cluster: '{cluster}' })[1]).toContain(`ON CLUSTER '{cluster}'`);
  });

  it('points views at the local tables and keeps their names', () => {
    const view = `CREATE MATERIALIZED VIEW IF NOT EXISTS ${DB}.d_mv TO ${DB}.d AS\nSELECT a, t FROM ${DB}.s WHERE a IN (SELECT a FROM ${DB}.e)`;
    expect(clusterStatements(view, o)).toEqual([`CREATE MATERIALIZED VIEW IF NOT EXISTS ${DB}.d_mv ON CLUSTER 'prod' TO ${DB}.d_local AS\nSELECT a, t FROM ${DB}.s_local WHERE a IN (SELECT a FROM ${DB}.e)`]);
  });

  it('empties local tables and drops views on every node; leaves an INSERT ... SELECT to the Distributed tables', () => {
    expect(clusterStatements(`TRUNCATE TABLE IF EXISTS ${DB}.s`, o)).toEqual([`TRUNCATE TABLE IF EXISTS ${DB}.s_local ON CLUSTER 'prod'`]);
    expect(clusterStatements(`TRUNCATE TABLE ${DB}.e`, o)).toEqual([`TRUNCATE TABLE ${DB}.e ON CLUSTER 'prod'`]);
    expect(clusterStatements(`DROP VIEW IF EXISTS ${DB}.d_mv`, o)).toEqual([`DROP VIEW IF EXISTS ${DB}.d_mv ON CLUSTER 'prod'`]);
    const insert = `INSERT INTO ${DB}.s (a, t)\nSETTINGS insert_deduplicate = 0\nSELECT a, t FROM ${DB}.e`;
    expect(clusterStatements(insert, o)).toEqual([insert]);
    expect(clusterStatements(`INSERT INTO ${DB}.e SELECT a, t FROM ${DB}.s`, o)).toHaveLength(1);
  });

  it.each([
    ['an INSERT into a table whose Distributed table has no sharding key', `INSERT INTO ${DB}.d SELECT a, t FROM ${DB}.s`, /d has no sharding key/],
    ['an INSERT without SELECT', `INSERT INTO ${DB}.s VALUES ('a', now())`, /expected INSERT INTO meterline.<table> ... SELECT/],
    ['a TRUNCATE of another database', `TRUNCATE TABLE other.s`, /expected TRUNCATE TABLE/],
    ['a DROP TABLE', `DROP TABLE ${DB}.s`, /only CREATE DATABASE, CREATE TABLE/],
    ['a table without placement', table('unknown', 'MergeTree'), /no cluster placement for table unknown/],
    ['an ALTER', `ALTER TABLE ${DB}.s ADD COLUMN b String`, /only CREATE DATABASE, CREATE TABLE/],
    ['a non-MergeTree engine', table('s', 'Memory'), /engine Memory has no replicated form/],
    ['an already replicated engine', table('s', "ReplicatedMergeTree('/x', 'y')"), /has no replicated form/],
    ['another database', table('s', 'MergeTree').replace(`${DB}.s`, 'other.s'), /not in database meterline/],
    ['a view from sharded rows into an unsharded table', `CREATE MATERIALIZED VIEW ${DB}.v TO ${DB}.e AS SELECT a FROM ${DB}.s`, /cannot write to e/],
    ['a view without TO', `CREATE MATERIALIZED VIEW ${DB}.v ENGINE = MergeTree ORDER BY a AS SELECT a FROM ${DB}.s`, /expected CREATE MATERIALIZED VIEW/],
    ['a replicated dedup setting set by hand', table('s', 'MergeTree', '\nSETTINGS replicated_deduplication_window = 5'), /set by the clustered form/],
  ])('refuses %s', (_, statement, error) => {
    expect(() => clusterStatements(statement, o)).toThrow(error);
  });

  it.each(["a'b", 'two words', '', '{a b}'])('refuses the cluster name %j', (cluster) => {
    expect(() => clusterStatements(table('s', 'MergeTree'), { ...o, cluster })).toThrow(/not a cluster name/);
  });
});

describe('schemaMismatch', () => {
  const singleNode = { events_raw: 'MergeTree', invoices: 'MergeTree', anomalies: 'ReplacingMergeTree', event_keys_mv: 'MaterializedView' };
  const clustered = { events_raw: 'Distributed', events_raw_local: 'ReplicatedMergeTree', invoices: 'ReplicatedMergeTree', anomalies: 'ReplicatedReplacingMergeTree', event_keys_mv: 'MaterializedView' };

  it.each([
    ['an empty database, single node', {}, false, undefined],
    ['an empty database, cluster', {}, true, undefined],
    ['a single-node database, single node', singleNode, false, undefined],
    ['a clustered database, cluster', clustered, true, undefined],
    ['a single-node database, cluster', singleNode, true, /created for a single node \(events_raw \(MergeTree\), invoices \(MergeTree\), anomalies/],
    ['a clustered database, single node', clustered, false, /has the clustered schema \(events_raw \(Distributed\), invoices \(ReplicatedMergeTree\)/],
  ] as const)('%s', (_, engines, isCluster, want) => {
    const got = schemaMismatch(engines, isCluster);
    if (want === undefined) expect(got).toBeUndefined();
    else expect(got).toMatch(want);
  });
});
