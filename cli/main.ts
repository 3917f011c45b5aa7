#!/usr/bin/env node
import fs from 'node:fs';
import path from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import { loadConfig, type Config } from '../common/config.ts';
import { errorMessage, isAppError } from '../common/errors.ts';
import { Scopes, type Scope } from '../api/index.ts';
import { chdbDir, readRuntimeInfo } from './runtime-info.ts';
import type { openCatalog, Role } from './runtime.ts';
import type { RateInput } from '../rater/pricing/index.ts';
import { registerInvoiceCommand } from './invoice-dry-run.ts';
import { registerUnbilledCommand } from './unbilled.ts';
import { registerRevenueCommands } from './revenue.ts';

// What a command runs loads when it runs, so `--help`, `--version` and the light commands never
// load fastify, NATS, chDB or Stripe: in the bundle (deploy/build.mjs) each import() below is a
// chunk of its own, loaded on demand (docs/runbook.md#start-up). Static imports stay light.
const runtime = () => import('./runtime.ts');
const logging = () => import('../common/logger.ts');
const clickhouse = () => import('../common/clickhouse.ts');
const natsClient = () => import('../common/nats.ts');
const storeServer = () => import('../store-server/index.ts');
const demos = () => Promise.all([import('./demo.ts'), import('./demo-billing.ts')]);
const pricing = () => import('../rater/pricing/index.ts');

/** The version of this checkout's package.json. */
const VERSION = (JSON.parse(fs.readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;

const program = new Command()
  .name('meterline')
  .version(VERSION, '-V, --version', 'print the version of Meterline')
  .description('Usage metering: CloudEvents in, exact deduplicated rollups out (NATS JetStream + ClickHouse).\nConfiguration comes from environment variables; see .env.example.')
  .showHelpAfterError();

function config(): Config {
  return loadConfig(process.env);
}

/** The demo's grace period: its billing period is closed for real within the demo (a deployment's default stays 1h). */
const DEMO_BILLING_GRACE = '20s';

async function runRoles(roles: Role[], opts: { demo?: boolean }) {
  const demoGrace = opts.demo && !process.env.BILLING_GRACE;
  if (demoGrace) process.env.BILLING_GRACE = DEMO_BILLING_GRACE;
  const cfg = config();
  const logger = (await logging()).createLogger({ level: cfg.LOG_LEVEL });
  const rt = await (await runtime()).startRuntime(cfg, roles, logger);
  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down: draining in-flight batches');
    await rt.stop();
    process.exit(0);
  };
  process.on('SIGINT', () => void shutdown('SIGINT'));
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  const say = (s: string) => process.stderr.write(s + '\n');
  say(`\nMeterline is running (${roles.join(', ')}).`);
  if (rt.url && (roles.includes('api') || roles.includes('ingest'))) say(`  HTTP API      ${rt.url}  (OpenAPI: ${rt.url}/docs)`);
  else if (rt.url) say(`  Operations    ${rt.url}/healthz, /readyz, /metrics (read key)`);
  if (rt.url && roles.includes('api')) say(`  Dashboard     ${rt.url}/ui/  (sign in with an API key; customer portal: ${rt.url}/ui/portal/)`);
  say(`  NATS          ${rt.natsServer ? `${rt.natsServer.url} (embedded, data in ${rt.natsServer.storeDir})` : cfg.NATS_URL ?? 'from a running meterline'}`);
  if (rt.store) say(`  ClickHouse    ${rt.store.embedded ? `embedded chDB, data in ${chdbDir(cfg)}` : cfg.CLICKHOUSE_URL}`);
  if (rt.firstAdminKey) {
    say(`\n  First admin API key (shown once; also saved to ${path.join(cfg.stateDir, 'admin-key')}):\n    ${rt.firstAdminKey}\n`);
  }
  if (opts.demo && rt.url) {
    const key = rt.firstAdminKey ?? readAdminKey(cfg);
    if (!key) say('demo: no admin key found in the state folder; create one with `meterline keys create --scope admin` and set METERLINE_API_KEY');
    else {
      const [{ runDemo }, { runBillingDemo }] = await demos();
      await runDemo(rt.url, key, say);
      say(demoGrace ? `\ndemo: BILLING_GRACE=${DEMO_BILLING_GRACE} for this process, so the demo can close a billing period within minutes (the default is 1h; set BILLING_GRACE to choose)` : `\ndemo: BILLING_GRACE=${process.env.BILLING_GRACE} (as set)`);
      await runBillingDemo(rt.url, key, say, { graceMs: cfg.BILLING_GRACE });
    }
  }
  say('Press Ctrl-C to stop.');
}

function readAdminKey(cfg: Config): string | undefined {
  if (process.env.METERLINE_API_KEY) return process.env.METERLINE_API_KEY;
  try {
    return fs.readFileSync(path.join(cfg.stateDir, 'admin-key'), 'utf8').trim();
  } catch {
    return undefined;
  }
}

program
  .command('start')
  .description('Run every role in one process: ingest, processor, API and scheduler. Starts nats-server and embedded ClickHouse unless NATS_URL / CLICKHOUSE_URL are set.')
  .option('--demo', 'also create demo meters and send a small workload (duplicates, late events) and print the usage it produces; then bill a period that ends during the demo, with a late event (runs with BILLING_GRACE=20s unless it is set)')
  .action((opts: { demo?: boolean }) => runRoles(['ingest', 'processor', 'api', 'scheduler'], opts));
program.command('ingest').description('Run the HTTP ingest role only (needs NATS; stateless, scale out freely).').action(() => runRoles(['ingest'], {}));
program.command('processor').description('Run the stream processor only (needs NATS and ClickHouse).').action(() => runRoles(['processor'], {}));
program.command('scheduler').description('Run scheduled jobs only: billing close of due periods (under a lease: run as many as you like).').action(() => runRoles(['scheduler'], {}));
program.command('api').description('Run the HTTP API (ingest, meters, usage, admin) without the processor.').action(() => runRoles(['api'], {}));

// `meterline store`: the embedded ClickHouse served over HTTP, for several processes on one machine.
function parsePort(value: string): number {
  const port = Number(value);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new InvalidArgumentError('a port from 0 to 65535 (0: any free port)');
  return port;
}
program
  .command('store')
  .description(
    "Serve embedded ClickHouse (chDB) over ClickHouse's HTTP interface, so several Meterline processes on this machine (processors, ingest, api) share one data directory: run them with CLICKHOUSE_URL set to the URL this prints (and CLICKHOUSE_PASSWORD to STORE_PASSWORD if set). One process owns the directory; this is not a replicated cluster.",
  )
  .option('--host <host>', 'listen address; anything but loopback requires STORE_PASSWORD', '127.0.0.1')
  .option('--port <port>', "listen port (0: any free port; 8123 is ClickHouse's HTTP port)", parsePort, 8123)
  .option('--data-dir <dir>', 'chDB data directory (default: CLICKHOUSE_DATA_DIR, else <state dir>/clickhouse)')
  .action(async (opts: { host: string; port: number; dataDir?: string }) => {
    const cfg = config();
    const logger = (await logging()).createLogger({ level: cfg.LOG_LEVEL });
    const dataDir = path.resolve(opts.dataDir ?? chdbDir(cfg));
    const store = await (await storeServer()).startStoreServer({ dataDir, host: opts.host, port: opts.port, password: cfg.STORE_PASSWORD, logger: logger.child({ component: 'store' }) });
    let stopping = false;
    const shutdown = async (signal: string) => {
      if (stopping) return;
      stopping = true;
      logger.info({ signal }, 'shutting down: finishing queries in flight');
      await store.close();
      process.exit(0);
    };
    process.on('SIGINT', () => void shutdown('SIGINT'));
    process.on('SIGTERM', () => void shutdown('SIGTERM'));
    process.stdout.write(`CLICKHOUSE_URL=${store.url}\n`);
    process.stderr.write(
      `\nMeterline store is serving embedded ClickHouse (chDB, data in ${dataDir}).\n  Run other Meterline processes with CLICKHOUSE_URL=${store.url}${cfg.STORE_PASSWORD ? ' and CLICKHOUSE_PASSWORD set to STORE_PASSWORD' : ''}.\nPress Ctrl-C to stop.\n`,
    );
  });

const keys = program.command('keys').description('Manage API keys (writes straight to the NATS catalog).');
keys
  .command('create')
  .description('Create an API key; prints it once.')
  .requiredOption('--name <name>', 'who or what uses the key')
  .addOption(new Option('--scope <scope...>', 'scopes: ingest, read, billing, admin').choices([...Scopes]).makeOptionMandatory())
  .action(async (opts: { name: string; scope: Scope[] }) => {
    await withCatalog(async (c) => {
      const { key, record } = await c.keys.create(opts.name, opts.scope);
      process.stdout.write(JSON.stringify({ key, ...record }, null, 2) + '\n');
    });
  });
keys
  .command('list')
  .description('List API keys (never the keys themselves).')
  .action(async () => withCatalog(async (c) => void process.stdout.write(JSON.stringify(c.keys.list(), null, 2) + '\n')));
keys
  .command('revoke <id>')
  .description('Revoke an API key by its id.')
  .action(async (id: string) =>
    withCatalog(async (c) => {
      if (!(await c.keys.revoke(id))) throw new Error(`no API key with id ${id}; see \`meterline keys list\``);
      process.stdout.write(`revoked ${id}\n`);
    }),
  );

program
  .command('migrate')
  .description(
    'Apply the ClickHouse migrations in sql/ to CLICKHOUSE_URL (every role also applies them at start), or with --print show the SQL instead: to review the clustered form (sql/README.md) or apply it by hand with clickhouse-client --multiquery.',
  )
  .option('--print', 'print the statements that would run for CLICKHOUSE_DATABASE, including the schema_migrations records; touches no database')
  .option('--cluster <name>', 'the clustered form, ON CLUSTER <name> (default: CLICKHOUSE_CLUSTER; unset: single node)')
  .action(async (opts: { print?: boolean; cluster?: string }) => {
    const cfg = config();
    const cluster = opts.cluster ?? cfg.CLICKHOUSE_CLUSTER;
    const db = cfg.CLICKHOUSE_DATABASE;
    const { migrate, migrationPlan, openStore } = await clickhouse();
    if (opts.print) {
      const plan = migrationPlan(db, { cluster });
      const out = [`-- Meterline ClickHouse schema for database ${db}, ${cluster ? `clustered form for cluster '${cluster}'` : 'single node'} (\`meterline migrate --print\`).`];
      out.push(...plan.bootstrap.map((st) => `${st};\n`));
      for (const f of plan.files) {
        out.push(`-- ${f.name}`, ...f.statements.map((st) => `${st};\n`), `INSERT INTO ${db}.schema_migrations (version, name) VALUES (${f.version}, '${f.name}');\n`);
      }
      process.stdout.write(out.join('\n'));
      return;
    }
    const logger = (await logging()).createLogger({ level: cfg.LOG_LEVEL });
    const store = await openStore({ url: cfg.CLICKHOUSE_URL, user: cfg.CLICKHOUSE_USER, password: cfg.CLICKHOUSE_PASSWORD, dataDir: chdbDir(cfg), db });
    try {
      const applied = await migrate(store, logger, { cluster });
      process.stderr.write(applied.length > 0 ? `applied ${applied.join(', ')}\n` : 'up to date: nothing to apply\n');
    } finally {
      await store.close();
    }
  });

program
  .command('reconcile')
  .description('Prove exactly-once per event for a range: duplicates, missing and orphan values, missing dedup keys, rollups vs values (through the running API).')
  .requiredOption('--from <time>', 'RFC 3339 start, e.g. 2026-01-01T00:00:00Z')
  .requiredOption('--to <time>', 'RFC 3339 end (exclusive)')
  .option('--subject <subject>', 'one customer only')
  .option('--meter <slug>', 'one meter only')
  .option('--url <url>', 'API base URL (default: the running meterline start, or METERLINE_URL)')
  .action(async (opts: { from: string; to: string; subject?: string; meter?: string; url?: string }) => {
    const { url, key } = apiTarget(opts.url);
    const qs = new URLSearchParams({ from: opts.from, to: opts.to, ...(opts.subject ? { subject: opts.subject } : {}), ...(opts.meter ? { meter: opts.meter } : {}) });
    const res = await fetch(`${url}/api/v1/reconcile?${qs}`, { headers: { authorization: `Bearer ${key}` } });
    const body = (await res.json()) as { ok?: boolean };
    process.stdout.write(JSON.stringify(body, null, 2) + '\n');
    if (!res.ok || !body.ok) process.exitCode = 1;
  });

program
  .command('repair')
  .description('Restore exactly-once for whole UTC days (duplicates, missing values and keys, rollup cells), then reconcile (through the running API, admin key).')
  .requiredOption('--from <time>', 'RFC 3339 start, rounded down to a UTC day, e.g. 2026-01-01T00:00:00Z')
  .requiredOption('--to <time>', 'RFC 3339 end (exclusive), rounded up to a UTC day')
  .option('--meter <slug>', 'one meter only (duplicates are removed for every meter)')
  .option('--url <url>', 'API base URL (default: the running meterline start, or METERLINE_URL)')
  .action(async (opts: { from: string; to: string; meter?: string; url?: string }) => {
    const { url, key } = apiTarget(opts.url);
    const res = await fetch(`${url}/api/v1/repair`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ from: opts.from, to: opts.to, ...(opts.meter ? { meter: opts.meter } : {}) }),
    });
    const body = (await res.json()) as { ok?: boolean };
    process.stdout.write(JSON.stringify(body, null, 2) + '\n');
    if (!res.ok || !body.ok) process.exitCode = 1;
  });

program
  .command('close')
  .description('Finalize (or preview with --dry-run) the billing periods that start in a month, through the running API.')
  .requiredOption('--period <YYYY-MM>', 'the month the billing periods start in, e.g. 2026-10', (v: string) => {
    if (!/^\d{4}-(0[1-9]|1[0-2])$/.test(v)) throw new InvalidArgumentError('give a month YYYY-MM, e.g. 2026-10 (month 01-12).');
    return v;
  })
  .option('--customer <key>', 'one customer only')
  .option('--dry-run', 'compute the invoices at the same cutoff without storing anything')
  .option('--url <url>', 'API base URL (default: the running meterline start, or METERLINE_URL)')
  .action(async (opts: { period: string; customer?: string; dryRun?: boolean; url?: string }) => {
    const { url, key } = apiTarget(opts.url);
    const res = await fetch(`${url}/api/v1/billing/close`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ period: opts.period, dryRun: opts.dryRun ?? false, ...(opts.customer ? { customer: opts.customer } : {}) }),
    });
    const body = (await res.json()) as { invoices?: { number?: string; id: string; customer: string; total: string; currency: string; lines: unknown[] }[]; skipped?: unknown[]; message?: string };
    if (!res.ok) throw new Error(body.message ?? `close failed with HTTP ${res.status}`);
    for (const inv of body.invoices ?? []) process.stderr.write(`${inv.number ?? `${inv.id} (preview)`}  ${inv.customer}  ${inv.lines.length} lines  ${inv.total} ${inv.currency}\n`);
    process.stdout.write(JSON.stringify(body, null, 2) + '\n');
  });

program
  .command('rate')
  .description('Price usage offline with a price JSON file (format: rater/pricing/README.md). Prints the exact amount, the amount rounded once to the currency, and the breakdown.')
  .requiredOption('--price <file>', 'price JSON file')
  .option('--quantity <q>', 'the quantity to price, a decimal such as 1500 or 12.5')
  .addOption(new Option('--values <file>', 'per-event amounts (percentage model): a JSON array, or one amount per line').conflicts('quantity'))
  .option('--by-dimension <file>', 'usage per dimension value (dimensional model): JSON {"<value>": "<quantity>" | {"quantity": "...", "values": [...]}}')
  .option('--currency <code>', 'ISO 4217 currency the amount is rounded to', 'USD')
  .action(async (opts: { price: string; quantity?: string; values?: string; byDimension?: string; currency: string }) => {
    const { normalizeCurrency, parseByDimensionText, parsePrice, parseValuesText, rate, roundMoney } = await pricing();
    const currency = normalizeCurrency(opts.currency);
    if (opts.quantity === undefined && opts.values === undefined && opts.byDimension === undefined) throw new Error('rate: give --quantity, --values or --by-dimension');
    const read = (file: string) => {
      try {
        return fs.readFileSync(file, 'utf8');
      } catch (err) {
        throw new Error(`cannot read ${file}: ${errorMessage(err)}`);
      }
    };
    const priceText = read(opts.price);
    let price;
    try {
      price = parsePrice(JSON.parse(priceText));
    } catch (err) {
      throw new Error(`${opts.price}: ${errorMessage(err)}`);
    }
    const input: RateInput = {
      quantity: opts.quantity ?? '0',
      ...(opts.values !== undefined ? { values: parseValuesText(read(opts.values)) } : {}),
      ...(opts.byDimension !== undefined ? { byDimension: parseByDimensionText(read(opts.byDimension)) } : {}),
    };
    const result = rate(price, input);
    const out = { amount: result.amount, amountRounded: roundMoney(result.amount, currency), currency, billedQuantity: result.billedQuantity, breakdown: result.breakdown };
    process.stdout.write(JSON.stringify(out, null, 2) + '\n');
  });

registerInvoiceCommand(program); // meterline invoice --dry-run --scenario <file> (cli/invoice-dry-run.ts)
registerUnbilledCommand(program, apiTarget); // meterline unbilled --month YYYY-MM [--csv] (cli/unbilled.ts)
registerRevenueCommands(program, apiTarget); // meterline revenue --month YYYY-MM [--csv], meterline journal --month YYYY-MM [--format] [--check] (cli/revenue.ts)

function apiTarget(urlOpt?: string): { url: string; key: string } {
  const cfg = config();
  const url = urlOpt ?? process.env.METERLINE_URL ?? readRuntimeInfo(cfg)?.httpUrl;
  if (!url) throw new Error('no running Meterline found: start one with `meterline start`, or pass --url / set METERLINE_URL');
  const key = readAdminKey(cfg);
  if (!key) throw new Error('no API key: set METERLINE_API_KEY');
  return { url, key };
}

async function withCatalog(fn: (c: Awaited<ReturnType<typeof openCatalog>>) => Promise<void>) {
  const cfg = config();
  const logger = (await logging()).silentLogger();
  const { natsTopology, openCatalog, resolveNats } = await runtime();
  const { url, server } = await resolveNats(cfg, logger);
  const nats = await (await natsClient()).openNats(url, natsTopology(cfg), logger, 'meterline-cli');
  const catalog = await openCatalog(nats, logger);
  try {
    await fn(catalog);
  } finally {
    catalog.stop();
    await nats.close();
    await server?.stop();
  }
}

program.parseAsync(process.argv).catch((err: unknown) => {
  process.stderr.write(`meterline: ${isAppError(err) ? err.message : errorMessage(err)}\n`);
  process.exit(1);
});
