import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createClient, type ClickHouseClient } from '@clickhouse/client';
import { clusterMigration, schemaMismatch } from './cluster-sql.ts';
import { AppError, errorMessage } from './errors.ts';
import type { Logger } from './logger.ts';

export type { ClickHouseClient };

export interface Store {
  ch: ClickHouseClient;
  /** The database every table lives in; a validated identifier, qualified into SQL. */
  db: string;
  embedded: boolean;
  close(): Promise<void>;
}

/** JSON output with decimals and 64-bit integers as strings: no float ever enters JS. */
const EXACT_JSON = { output_format_json_quote_decimals: 1, output_format_json_quote_64bit_integers: 1 } as const;

/**
 * ClickHouse: a server when `url` is given, otherwise embedded chDB with its data under
 * `dataDir` (one process owns that directory). The same client and the same SQL serve both.
 */
export async function openStore(opts: { url?: string; user?: string; password?: string; dataDir: string; db: string }): Promise<Store> {
  let ch: ClickHouseClient;
  if (opts.url) {
    ch = createClient({ url: opts.url, username: opts.user, password: opts.password, clickhouse_settings: EXACT_JSON, request_timeout: 60_000 });
  } else {
    fs.mkdirSync(opts.dataDir, { recursive: true });
    const { createChdbConnection } = await import('chdb/connection');
    // chDB applies a request's settings to its one session, where they stay: every request
    // therefore restates the per-insert settings, so a dedup token never outlives its insert.
    const perRequest = { insert_deduplication_token: '', deduplicate_blocks_in_dependent_materialized_views: 0 } as const;
    try {
      ch = createClient({ connection: createChdbConnection({ path: opts.dataDir }), clickhouse_settings: { ...EXACT_JSON, ...perRequest } } as Parameters<typeof createClient>[0]);
      await ch.command({ query: `CREATE DATABASE IF NOT EXISTS ${opts.db}` });
    } catch (err) {
      // chDB: one process per data folder ("Cannot lock file .../status").
      if (/Cannot lock file|Another server instance|Failed to create connection for path/i.test(errorMessage(err))) {
        throw new AppError(
          'STORE_LOCKED',
          `cannot open the embedded ClickHouse folder ${opts.dataDir}: another process has it open (another meterline on the same METERLINE_STATE_DIR?), or it is not writable. ` +
            'Stop it, run this one with its own METERLINE_STATE_DIR, or share the folder: run `meterline store` and set CLICKHOUSE_URL to the URL it prints',
          { cause: err, details: { dataDir: opts.dataDir } },
        );
      }
      throw err;
    }
    return { ch, db: opts.db, embedded: true, close: () => ch.close() };
  }
  await ch.command({ query: `CREATE DATABASE IF NOT EXISTS ${opts.db}` });
  return { ch, db: opts.db, embedded: !opts.url, close: () => ch.close() };
}

export const SQL_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'sql');

/** Splits a migration file into statements (`;` at the end of a line), dropping `--` comments. */
export function splitStatements(sql: string): string[] {
  const noComments = sql
    .split('\n')
    .filter((l) => !/^\s*--/.test(l))
    .join('\n');
  return noComments
    .split(/;\s*(?:\n|$)/)
    .map((s) => s.trim())
    .filter(Boolean);
}

/** Options of `migrate` and `migrationPlan`. */
export interface MigrateOptions {
  /** Folder of `NNN_*.sql` files; default `sql/`. */
  dir?: string;
  /** `CLICKHOUSE_CLUSTER`: apply the clustered form (common/cluster-sql.ts) on this cluster. */
  cluster?: string;
}

/**
 * What `migrate` runs, in order: the bookkeeping statements, then each file's statements
 * (`${DB}` substituted; rewritten by `clusterMigration` when a cluster is given). Reads the
 * files, touches no database; `meterline migrate --print` shows the same plan.
 */
export function migrationPlan(db: string, opts: MigrateOptions = {}): { bootstrap: string[]; files: { version: number; name: string; statements: string[] }[] } {
  const { dir = SQL_DIR, cluster } = opts;
  const forTarget = (statements: string[]) => (cluster ? clusterMigration(statements, { cluster, db }) : statements);
  const migrations = `CREATE TABLE IF NOT EXISTS ${db}.schema_migrations (version UInt32, name String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) ENGINE = MergeTree ORDER BY version`;
  // On a cluster the database must exist on every node before ON CLUSTER tables can be made in it.
  const bootstrap = cluster ? forTarget([`CREATE DATABASE IF NOT EXISTS ${db}`, migrations]) : [migrations];
  const files = fs
    .readdirSync(dir)
    .filter((f) => /^\d{3}_.+\.sql$/.test(f))
    .sort()
    .map((name) => ({ version: Number(name.slice(0, 3)), name, statements: forTarget(splitStatements(fs.readFileSync(path.join(dir, name), 'utf8').replaceAll('${DB}', db))) }));
  return { bootstrap, files };
}

/**
 * Applies `sql/NNN_*.sql` in order. Statements are idempotent (IF NOT EXISTS), and each file
 * is recorded once it has fully applied, so a crash halfway re-runs that file harmlessly.
 * With `cluster`, every statement runs ON CLUSTER (see common/cluster-sql.ts and sql/README.md).
 */
export async function migrate(store: Store, logger: Logger, opts: MigrateOptions = {}): Promise<string[]> {
  const { ch, db } = store;
  if (opts.cluster && store.embedded) {
    throw new AppError('CONFIG_INVALID', 'invalid configuration:\n  CLICKHOUSE_CLUSTER: needs a ClickHouse server cluster (CLICKHOUSE_URL); embedded chDB is one node');
  }
  const plan = migrationPlan(db, opts);
  const existing = await ch.query({ query: 'SELECT name, engine FROM system.tables WHERE database = {db:String}', query_params: { db }, format: 'JSONEachRow' });
  const mismatch = schemaMismatch(Object.fromEntries((await existing.json<{ name: string; engine: string }>()).map((t) => [t.name, t.engine])), Boolean(opts.cluster));
  if (mismatch) throw new AppError('CONFIG_INVALID', `invalid configuration:\n  CLICKHOUSE_CLUSTER: ${mismatch}`);
  for (const statement of plan.bootstrap) await ch.command({ query: statement });
  const rs = await ch.query({ query: `SELECT version FROM ${db}.schema_migrations`, format: 'JSONEachRow' });
  const done = new Set((await rs.json<{ version: number | string }>()).map((r) => Number(r.version)));
  const applied: string[] = [];
  for (const { version, name: file, statements } of plan.files) {
    if (done.has(version)) continue;
    for (const statement of statements) await ch.command({ query: statement });
    await ch.insert({ table: `${db}.schema_migrations`, values: [{ version, name: file }], format: 'JSONEachRow' });
    logger.info({ migration: file, cluster: opts.cluster }, 'applied migration');
    applied.push(file);
  }
  return applied;
}
