/**
 * The clustered form of the migrations in `sql/`. Pure: statements in, statements out.
 *
 * `sql/*.sql` is written for one node. On a ClickHouse cluster (`CLICKHOUSE_CLUSTER`) each
 * statement is rewritten here, by the rules below, so there is one source of truth for the
 * schema and the clustered form cannot drift from it:
 *
 * - Every DDL runs `ON CLUSTER '<cluster>'` (on every node, through the distributed DDL queue).
 * - Each table has a placement (`PLACEMENTS`, one line per table; a table without one is an
 *   error, so a new migration has to decide):
 *   - `sharded`: the data is split over the shards. Each node holds `<name>_local`, a
 *     `Replicated*MergeTree` replicated within its shard; `<name>` becomes a `Distributed` table
 *     over them, so the application's queries, which name `<name>`, read every shard. A
 *     `shardingKey` makes the Distributed table writable (the processor and the backfill insert
 *     through it); tables filled only by materialized views get none, so a stray insert through
 *     them fails instead of landing on the wrong shard.
 *   - `everywhere`: small billing, anomaly and bookkeeping tables keep their name and are one
 *     `Replicated*MergeTree` with every node of the cluster as a replica. Every node holds all
 *     rows, so `FINAL`, joins and read-after-close behave as on one node.
 * - Materialized views read and write the local tables (`TO <target>_local`, `FROM
 *   <source>_local`): an insert that lands on a shard is rolled up on that shard, by the same
 *   view, from the same block. Reads merge the partial aggregate states of every shard
 *   (`sumMerge`, `uniqExactMerge`, `argMaxMerge`, ... over the Distributed table), which is exact.
 * - Engines: `X MergeTree(args)` becomes `ReplicatedXMergeTree('<keeper path>', '{replica}', args)`
 *   with an explicit Keeper path (`/clickhouse/tables/{shard}/{database}/{table}`, or `all` in
 *   place of `{shard}` for `everywhere` tables), so nothing depends on the server's
 *   `default_replica_path`.
 * - Insert deduplication keeps its single-node meaning: `non_replicated_deduplication_window = N`
 *   becomes `replicated_deduplication_window = N` with a time window long enough that the block
 *   count decides, as on one node; a table without the setting (no deduplication on one node) gets
 *   `replicated_deduplication_window = 0`.
 *
 * - Data statements of a migration: `TRUNCATE TABLE` empties the local tables on every node (`ON
 *   CLUSTER`); `INSERT INTO <table> ... SELECT` runs once, on the node that applies the migration,
 *   through the Distributed table, which must therefore have a sharding key (rows go to their
 *   subject's shard, where the views would have put them); `DROP VIEW` runs `ON CLUSTER`.
 *
 * Only the statement shapes the migrations use are accepted (CREATE DATABASE, CREATE TABLE with a
 * MergeTree-family engine, CREATE MATERIALIZED VIEW ... TO, TRUNCATE TABLE, INSERT INTO ... SELECT,
 * DROP VIEW); anything else throws, naming the statement: a migration that needs more (an ALTER)
 * has to extend this first.
 */

/** A cluster name from the server's `remote_servers`, or a macro such as `{cluster}`. */
export const CLUSTER_NAME_PATTERN = /^(?:[A-Za-z0-9_][A-Za-z0-9_.-]*|\{[A-Za-z0-9_]+\})$/;

export type Placement = { kind: 'sharded'; shardingKey: string | null } | { kind: 'everywhere' };

/**
 * Events and everything derived from them are sharded by customer (`subject`): the
 * processor's inserts into `events_raw` and the backfill's into `meter_values` route each row by
 * the same expression, so an event, its meter values and its rollup rows share a shard, and a
 * per-customer query (billing close) needs one shard. The key is deterministic, so a retried
 * insert sends the same rows to the same shards, where insert deduplication recognises them.
 */
export const SHARD_BY_SUBJECT = 'cityHash64(subject)';

export const PLACEMENTS: Readonly<Record<string, Placement>> = {
  events_raw: { kind: 'sharded', shardingKey: SHARD_BY_SUBJECT },
  meter_values: { kind: 'sharded', shardingKey: SHARD_BY_SUBJECT },
  // Filled only by materialized views on the local tables.
  event_keys: { kind: 'sharded', shardingKey: null },
  meter_usage_1m: { kind: 'sharded', shardingKey: null },
  meter_usage_1h: { kind: 'sharded', shardingKey: null },
  meter_usage_1d: { kind: 'sharded', shardingKey: null },
  // The rollups with wide sums (sql/006): also filled by views, but written through their
  // Distributed table by the migration's copy and by `repair`'s rebuild, so they route by subject
  // like the rows they are made from.
  meter_usage_1m_v2: { kind: 'sharded', shardingKey: SHARD_BY_SUBJECT },
  meter_usage_1h_v2: { kind: 'sharded', shardingKey: SHARD_BY_SUBJECT },
  meter_usage_1d_v2: { kind: 'sharded', shardingKey: SHARD_BY_SUBJECT },
  // Small, read with FINAL / joins / read-after-write: a full copy on every node.
  schema_migrations: { kind: 'everywhere' },
  meter_backfills: { kind: 'everywhere' },
  invoices: { kind: 'everywhere' },
  invoice_lines: { kind: 'everywhere' },
  adjustments: { kind: 'everywhere' },
  invoice_sync: { kind: 'everywhere' },
  anomalies: { kind: 'everywhere' },
  anomaly_actions: { kind: 'everywhere' },
  alert_deliveries: { kind: 'everywhere' },
};

export const LOCAL_SUFFIX = '_local';
export const SHARDED_KEEPER_PATH = '/clickhouse/tables/{shard}/{database}/{table}';
export const EVERYWHERE_KEEPER_PATH = '/clickhouse/tables/all/{database}/{table}';
export const REPLICA_NAME = '{replica}';
/** Ten years: the `replicated_deduplication_window` block count is what bounds the window. */
export const DEDUP_WINDOW_SECONDS = 10 * 365 * 86_400;

const MERGE_TREE = /^(|Replacing|Aggregating|Summing|Collapsing|VersionedCollapsing|Graphite)MergeTree$/;

export interface ClusterOptions {
  cluster: string;
  /** The database the statements create their objects in (`${DB}` already substituted). */
  db: string;
  placements?: Readonly<Record<string, Placement>>;
}

/** The clustered form of every statement, in order (a sharded table becomes two statements). */
export function clusterMigration(statements: readonly string[], opts: ClusterOptions): string[] {
  return statements.flatMap((s) => clusterStatements(s, opts));
}

/** The clustered form of one single-node statement. */
export function clusterStatements(statement: string, opts: ClusterOptions): string[] {
  if (!CLUSTER_NAME_PATTERN.test(opts.cluster)) throw new Error(`"${opts.cluster}" is not a cluster name`);
  const s = statement.trim();
  if (/^CREATE\s+DATABASE\b/i.test(s)) return [createDatabase(s, opts)];
  if (/^CREATE\s+MATERIALIZED\s+VIEW\b/i.test(s)) return [createView(s, opts)];
  if (/^CREATE\s+TABLE\b/i.test(s)) return createTable(s, opts);
  if (/^TRUNCATE\s+TABLE\b/i.test(s)) return [truncateTable(s, opts)];
  if (/^INSERT\s+INTO\b/i.test(s)) return [insertSelect(s, opts)];
  if (/^DROP\s+VIEW\b/i.test(s)) return [dropView(s, opts)];
  throw unsupported(s, 'only CREATE DATABASE, CREATE TABLE, CREATE MATERIALIZED VIEW ... TO, TRUNCATE TABLE, INSERT INTO ... SELECT and DROP VIEW have a clustered form');
}

/** `<name>_local` for a sharded table, the name itself otherwise. */
export function physicalName(table: string, placements: Readonly<Record<string, Placement>> = PLACEMENTS): string {
  return placementOf(table, placements).kind === 'sharded' ? table + LOCAL_SUFFIX : table;
}

/**
 * Why the tables already in a database do not fit the form about to be applied, or undefined.
 * Setting CLICKHOUSE_CLUSTER does not turn a single-node database into a clustered one (every
 * CREATE ... IF NOT EXISTS would skip the existing table), nor does unsetting it undo one; either
 * way later migrations would mix the two forms. `engines`: table name to engine, as in
 * `system.tables`.
 */
export function schemaMismatch(engines: Readonly<Record<string, string>>, clustered: boolean, placements: Readonly<Record<string, Placement>> = PLACEMENTS): string | undefined {
  const wrong: string[] = [];
  for (const [table, p] of Object.entries(placements)) {
    const engine = engines[table];
    if (engine === undefined) continue;
    const fits = clustered ? (p.kind === 'sharded' ? engine === 'Distributed' : engine.startsWith('Replicated')) : engine !== 'Distributed' && !engine.startsWith('Replicated');
    if (!fits) wrong.push(`${table} (${engine})`);
  }
  if (wrong.length === 0) return undefined;
  return clustered
    ? `the database was created for a single node (${wrong.slice(0, 3).join(', ')}); the clustered form needs a new database, see sql/README.md "Moving a single node to a cluster"`
    : `the database has the clustered schema (${wrong.slice(0, 3).join(', ')}); set CLICKHOUSE_CLUSTER to the cluster it was created on`;
}

// ---- statements ------------------------------------------------------------------------------

function onCluster(opts: ClusterOptions): string {
  return `ON CLUSTER '${opts.cluster}'`;
}

function createDatabase(s: string, opts: ClusterOptions): string {
  const m = /^CREATE\s+DATABASE\s+(IF\s+NOT\s+EXISTS\s+)?(\w+)$/i.exec(s);
  if (!m || m[2] !== opts.db) throw unsupported(s, `expected CREATE DATABASE [IF NOT EXISTS] ${opts.db}`);
  return `${s} ${onCluster(opts)}`;
}

function createTable(s: string, opts: ClusterOptions): string[] {
  const placements = opts.placements ?? PLACEMENTS;
  const head = /^CREATE\s+TABLE\s+(IF\s+NOT\s+EXISTS\s+)?(\w+)\.(\w+)/i.exec(s);
  if (!head) throw unsupported(s, 'expected CREATE TABLE [IF NOT EXISTS] <db>.<table>');
  const [headText, ifNotExists = '', db, table] = head as unknown as [string, string | undefined, string, string];
  if (db !== opts.db) throw unsupported(s, `the table is not in database ${opts.db}`);
  const placement = placementOf(table, placements);

  const open = s.indexOf('(', headText.length);
  if (open < 0 || s.slice(headText.length, open).trim() !== '') throw unsupported(s, 'expected a column list after the table name');
  const close = matchParen(s, open);
  const columns = s.slice(open, close + 1);
  const afterColumns = s.slice(close + 1);

  const engine = /^(\s*)ENGINE\s*=\s*(\w+)/.exec(afterColumns);
  if (!engine) throw unsupported(s, 'expected ENGINE = ... after the columns');
  const [engineText, gap = '', engineName = ''] = engine;
  if (!MERGE_TREE.test(engineName)) throw unsupported(s, `engine ${engineName} has no replicated form here (only the MergeTree family)`);
  let rest = afterColumns.slice(engineText.length);
  let args = '';
  const argOpen = /^\s*\(/.exec(rest);
  if (argOpen) {
    const argClose = matchParen(rest, argOpen[0].length - 1);
    args = rest.slice(argOpen[0].length, argClose).trim();
    rest = rest.slice(argClose + 1);
  }

  const keeperPath = placement.kind === 'sharded' ? SHARDED_KEEPER_PATH : EVERYWHERE_KEEPER_PATH;
  const replicated = `Replicated${engineName}('${keeperPath}', '${REPLICA_NAME}'${args ? `, ${args}` : ''})`;
  const name = physicalName(table, placements);
  const local = `CREATE TABLE ${ifNotExists}${db}.${name} ${onCluster(opts)}${s.slice(headText.length, open)}${columns}${gap}ENGINE = ${replicated}${replicatedSettings(rest, s)}`;
  if (placement.kind === 'everywhere') return [local];

  const target = [`'${opts.cluster}'`, `'${db}'`, `'${name}'`, ...(placement.shardingKey ? [placement.shardingKey] : [])];
  const distributed = `CREATE TABLE ${ifNotExists}${db}.${table} ${onCluster(opts)}${s.slice(headText.length, open)}${columns}${gap}ENGINE = Distributed(${target.join(', ')})`;
  return [local, distributed];
}

/** Maps the single-node deduplication setting to its replicated counterpart (see the file comment). */
function replicatedSettings(rest: string, statement: string): string {
  const m = /\bSETTINGS\b([\s\S]*)$/i.exec(rest);
  const before = m ? rest.slice(0, m.index) : rest;
  const pairs = m ? splitTopLevel(m[1]!, ',').map((p) => p.trim()) : [];
  let window = '0';
  const kept: string[] = [];
  for (const p of pairs) {
    const kv = /^(\w+)\s*=\s*(.+)$/.exec(p);
    if (!kv) throw unsupported(statement, `cannot read the setting "${p}"`);
    if (kv[1] === 'non_replicated_deduplication_window') window = kv[2]!.trim();
    else if (/^replicated_deduplication_window/.test(kv[1]!)) throw unsupported(statement, `${kv[1]} is set by the clustered form`);
    else kept.push(p);
  }
  const dedup = window === '0' ? ['replicated_deduplication_window = 0'] : [`replicated_deduplication_window = ${window}`, `replicated_deduplication_window_seconds = ${DEDUP_WINDOW_SECONDS}`];
  // The clause stays where it was (after ORDER BY, TTL, ...), or is appended on a line of its own.
  return `${m ? before : `${rest.trimEnd()}\n`}SETTINGS ${[...kept, ...dedup].join(', ')}`;
}

function createView(s: string, opts: ClusterOptions): string {
  const placements = opts.placements ?? PLACEMENTS;
  const m = /^CREATE\s+MATERIALIZED\s+VIEW\s+(IF\s+NOT\s+EXISTS\s+)?(\w+)\.(\w+)\s+TO\s+(\w+)\.(\w+)(\s+AS\s[\s\S]*)$/i.exec(s);
  if (!m) throw unsupported(s, 'expected CREATE MATERIALIZED VIEW [IF NOT EXISTS] <db>.<view> TO <db>.<table> AS SELECT ...');
  const [, ifNotExists = '', db, view, targetDb, target, body = ''] = m;
  if (db !== opts.db || targetDb !== opts.db) throw unsupported(s, `the view and its target must be in database ${opts.db}`);
  const targetPlacement = placementOf(target!, placements);
  const sources = [...body.matchAll(new RegExp(`\\b${opts.db}\\.(\\w+)\\b`, 'g'))].map((x) => x[1]!);
  if (sources.length === 0) throw unsupported(s, `the view reads no table of ${opts.db}`);
  for (const src of sources) {
    // A view fires on the node where its source block lands: a sharded source can only feed a
    // sharded target (each shard rolls up its own rows).
    if (placementOf(src, placements).kind === 'sharded' && targetPlacement.kind !== 'sharded') {
      throw unsupported(s, `a view over sharded ${src} cannot write to ${target}, which is not sharded`);
    }
  }
  const localBody = body.replace(new RegExp(`\\b${opts.db}\\.(\\w+)\\b`, 'g'), (_, t: string) => `${opts.db}.${physicalName(t, placements)}`);
  return `CREATE MATERIALIZED VIEW ${ifNotExists}${db}.${view} ${onCluster(opts)} TO ${db}.${physicalName(target!, placements)}${localBody}`;
}

/** `TRUNCATE TABLE [IF EXISTS] db.t` empties the physical table on every node. */
function truncateTable(s: string, opts: ClusterOptions): string {
  const m = /^TRUNCATE\s+TABLE\s+(IF\s+EXISTS\s+)?(\w+)\.(\w+)$/i.exec(s);
  if (!m || m[2] !== opts.db) throw unsupported(s, `expected TRUNCATE TABLE [IF EXISTS] ${opts.db}.<table>`);
  return `TRUNCATE TABLE ${m[1] ?? ''}${opts.db}.${physicalName(m[3]!, opts.placements ?? PLACEMENTS)} ${onCluster(opts)}`;
}

/**
 * `INSERT INTO db.t ... SELECT ...` is left as it is: it runs once (on the node applying the
 * migration) and names the Distributed tables, so it reads every shard and writes each row to its
 * shard. A sharded target needs a sharding key for that; without one the insert would fail on a
 * cluster of more than one shard, so it is refused here.
 */
function insertSelect(s: string, opts: ClusterOptions): string {
  const m = /^INSERT\s+INTO\s+(\w+)\.(\w+)\b[\s\S]*?\bSELECT\b/i.exec(s);
  if (!m || m[1] !== opts.db) throw unsupported(s, `expected INSERT INTO ${opts.db}.<table> ... SELECT`);
  const p = placementOf(m[2]!, opts.placements ?? PLACEMENTS);
  if (p.kind === 'sharded' && !p.shardingKey) throw unsupported(s, `${m[2]} has no sharding key, so its Distributed table cannot be written`);
  return s;
}

/** `DROP VIEW [IF EXISTS] db.v` on every node (views live on each node, over the local tables). */
function dropView(s: string, opts: ClusterOptions): string {
  const m = /^DROP\s+VIEW\s+(IF\s+EXISTS\s+)?(\w+)\.(\w+)$/i.exec(s);
  if (!m || m[2] !== opts.db) throw unsupported(s, `expected DROP VIEW [IF EXISTS] ${opts.db}.<view>`);
  return `DROP VIEW ${m[1] ?? ''}${opts.db}.${m[3]} ${onCluster(opts)}`;
}

// ---- helpers ---------------------------------------------------------------------------------

function placementOf(table: string, placements: Readonly<Record<string, Placement>>): Placement {
  const p = placements[table];
  if (!p) throw new Error(`no cluster placement for table ${table}: add it to PLACEMENTS in common/cluster-sql.ts (sharded or everywhere)`);
  return p;
}

function unsupported(statement: string, why: string): Error {
  return new Error(`no clustered form for this statement (${why}): ${statement.slice(0, 120).replace(/\s+/g, ' ')}...`);
}

/** Index of the parenthesis closing the one at `open`, skipping quoted strings and identifiers. */
function matchParen(text: string, open: number): number {
  let depth = 0;
  for (let i = open; i < text.length; i++) {
    const c = text[i];
    if (c === "'" || c === '`' || c === '"') {
      i = skipQuoted(text, i);
      continue;
    }
    if (c === '(') depth++;
    else if (c === ')' && --depth === 0) return i;
  }
  throw new Error(`unbalanced parentheses in: ${text.slice(open, open + 80)}`);
}

function skipQuoted(text: string, start: number): number {
  const q = text[start];
  for (let i = start + 1; i < text.length; i++) {
    if (text[i] === '\\') i++;
    else if (text[i] === q) return i;
  }
  throw new Error(`unterminated quote in: ${text.slice(start, start + 80)}`);
}

/** Splits on `sep` outside parentheses and quotes. */
function splitTopLevel(text: string, sep: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let from = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === "'" || c === '`' || c === '"') i = skipQuoted(text, i);
    else if (c === '(') depth++;
    else if (c === ')') depth--;
    else if (c === sep && depth === 0) {
      out.push(text.slice(from, i));
      from = i + 1;
    }
  }
  out.push(text.slice(from));
  return out.filter((p) => p.trim() !== '');
}
