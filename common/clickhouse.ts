import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createClient, type ClickHouseClient } from '@clickhouse/client';
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
    ch = createClient({ connection: createChdbConnection({ path: opts.dataDir }), clickhouse_settings: EXACT_JSON } as Parameters<typeof createClient>[0]);
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

/**
 * Applies `sql/NNN_*.sql` in order. Statements are idempotent (IF NOT EXISTS), and each file
 * is recorded once it has fully applied, so a crash halfway re-runs that file harmlessly.
 */
export async function migrate(store: Store, logger: Logger, dir = SQL_DIR): Promise<string[]> {
  const { ch, db } = store;
  await ch.command({
    query: `CREATE TABLE IF NOT EXISTS ${db}.schema_migrations (version UInt32, name String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) ENGINE = MergeTree ORDER BY version`,
  });
  const rs = await ch.query({ query: `SELECT version FROM ${db}.schema_migrations`, format: 'JSONEachRow' });
  const done = new Set((await rs.json<{ version: number | string }>()).map((r) => Number(r.version)));
  const files = fs.readdirSync(dir).filter((f) => /^\d{3}_.+\.sql$/.test(f)).sort();
  const applied: string[] = [];
  for (const file of files) {
    const version = Number(file.slice(0, 3));
    if (done.has(version)) continue;
    const text = fs.readFileSync(path.join(dir, file), 'utf8').replaceAll('${DB}', db);
    for (const statement of splitStatements(text)) await ch.command({ query: statement });
    await ch.insert({ table: `${db}.schema_migrations`, values: [{ version, name: file }], format: 'JSONEachRow' });
    logger.info({ migration: file }, 'applied migration');
    applied.push(file);
  }
  return applied;
}
