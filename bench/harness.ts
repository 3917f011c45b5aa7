import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, type JetStreamClient } from '@nats-io/jetstream';
import { Decimal } from '../common/decimal.ts';
import { partitionOf } from '../common/partition.ts';
import { startNatsServer, freePort, type NatsServerHandle } from '../common/nats-server.ts';
import { LoadGenerator } from './load.ts';
import { machine, peakRssMiB, ROOT, round, sleep, spawnNode, waitFor, type Child } from './lib.ts';
import { markdown } from './report.ts';

/**
 * The harness of `bench/run.ts`: options and sizes, the section runner (time limits, failures
 * recorded, results saved after every section), the processes the sections share (nats-server,
 * `meterline start`), the load they send and the exact check of its totals. The report is `report.ts`.
 */

/** One benchmark section: `bench/sections/*.ts`. */
export interface Section {
  name: string;
  /** One line for `--help`. */
  summary: string;
  /** Its time limit; a function when it depends on what is left of the run's budget. */
  timeoutMs: number | ((b: Bench) => number);
  /** It sends events through `meterline start`: if it fails, the totals are re-baselined for the next ones. */
  sendsEvents?: boolean;
  run(b: Bench, signal: AbortSignal): Promise<void>;
  /** Runs after the section whether it passed, failed or was left out by `--only`. */
  after?(b: Bench): Promise<void>;
}

export const BATCH = 1_000;
/** The stream's partitions (EVENT_PARTITIONS' default, set explicitly): the NATS producer publishes onto them. */
export const PARTITIONS = 8;

const FULL = {
  e2e: 1_000_000,
  replay: 1_000_000,
  ceiling: 1_000_000,
  decode: 1_000_000,
  latencySeconds: 20,
  ingestProbe: 300_000,
  freshness: 200,
  closeSubs: [10_000, 100_000],
  queryRows: [10_000_000, 100_000_000],
  checkRows: 1_000_000,
  dedupKeys: 864_000_000,
  roles: 300_000,
  queries: 200,
};
const QUICK: typeof FULL = {
  e2e: 60_000,
  replay: 60_000,
  ceiling: 100_000,
  decode: 100_000,
  latencySeconds: 3,
  ingestProbe: 30_000,
  freshness: 30,
  closeSubs: [200, 1_000],
  queryRows: [200_000, 1_000_000],
  checkRows: 50_000,
  dedupKeys: 8_640_000,
  roles: 20_000,
  queries: 100,
};
export type Sizes = typeof FULL;

/** The sizes of a mode, each multiplied by `scale` (rounded to its step, never below it). */
export function sizes(quick: boolean, scale: number): Sizes {
  const n = (x: number, min = BATCH) => Math.max(min, Math.round((x * scale) / min) * min);
  const base = quick ? QUICK : FULL;
  return {
    e2e: n(base.e2e),
    replay: n(base.replay),
    ceiling: n(base.ceiling, 10_000),
    decode: n(base.decode),
    latencySeconds: Math.max(2, Math.round(base.latencySeconds * Math.min(1, scale))),
    ingestProbe: n(base.ingestProbe),
    freshness: Math.max(10, Math.round(base.freshness * Math.min(1, scale))),
    closeSubs: base.closeSubs.map((x) => n(x, 20)),
    queryRows: base.queryRows.map((x) => n(x, 100_000)),
    checkRows: n(base.checkRows, 10_000),
    dedupKeys: n(base.dedupKeys, 10_000),
    roles: n(base.roles),
    queries: base.queries,
  };
}

export interface Options {
  quick: boolean;
  scale: number;
  outDir: string;
  budgetMs: number;
  /** `--only`: these sections and `start`; undefined runs every section. */
  only?: Set<string>;
}

const FLAGS = `Options (after \`--\` with npm run):
  --quick               every section at small sizes (npm run bench:quick)
  --scale <x>           multiply every size of the chosen mode by x (e.g. 0.01 to try the full
                        run's code paths in a few minutes); results are named bench-<mode>-x<x>
  --out <dir>           where the results go (default bench/results)
  --budget-minutes <m>  the whole run's time budget (full 35, quick 2): the stored-events fill
                        stops in time for the run to end within it, and says how far it got
  --only <a,b,…>        run only these sections (and \`start\`), to try one of them (an unknown
                        name is refused)
  -h, --help            this text`;

/** Parses the command line; undefined when it asked for `--help` (printed here). */
export function parseOptions(args: string[], sections: readonly Section[]): Options | undefined {
  const { values: argv } = parseArgs({ args, options: { quick: { type: 'boolean' }, scale: { type: 'string' }, out: { type: 'string' }, 'budget-minutes': { type: 'string' }, only: { type: 'string' }, help: { type: 'boolean', short: 'h' } } });
  if (argv.help) {
    const width = Math.max(...sections.map((s) => s.name.length));
    process.stdout.write(`Usage: node --expose-gc --import tsx bench/run.ts [options]\n\n${FLAGS}\n\nSections, in the order they run:\n${sections.map((s) => `  ${s.name.padEnd(width)}  ${s.summary}`).join('\n')}\n`);
    return undefined;
  }
  const quick = argv.quick ?? false;
  const scale = Number(argv.scale ?? 1);
  if (!(scale > 0)) throw new Error('--scale must be a positive number');
  const only = argv.only ? new Set(['start', ...argv.only.split(',')]) : undefined;
  const unknown = [...(only ?? [])].filter((name) => !sections.some((s) => s.name === name));
  if (unknown.length > 0) throw new Error(`--only: no section ${unknown.join(', ')} (sections: ${sections.map((s) => s.name).join(', ')})`);
  return {
    quick,
    scale,
    outDir: path.resolve(argv.out ?? path.join(ROOT, 'bench', 'results')),
    budgetMs: Number(argv['budget-minutes'] ?? (quick ? 2 : 35)) * 60_000,
    only,
  };
}

export type Totals = { calls: string; tokens: string; bytes: string; users: string };
export type SectionResult = { status: 'ok' | 'failed' | 'timed out'; seconds: number; loadAverage1m: number; error?: string };

class SectionTimeout extends Error {}

const DAY = 86_400_000;
/**
 * Totals of the four meters over whole UTC days around now (so the day rollups answer: cheap to
 * poll while the processor works); per-customer unique users summed, as the generator counts them.
 */
const range = () => `from=${new Date(Math.floor((Date.now() - 5 * DAY) / DAY) * DAY).toISOString()}&to=${new Date(Math.ceil((Date.now() + DAY) / DAY) * DAY).toISOString()}`;

/** The context every section gets: options, sizes, results, and the processes and load they share. */
export class Bench {
  readonly size: Sizes;
  readonly mode: 'quick' | 'full';
  readonly runName: string;
  readonly runStart = Date.now();
  readonly results: Record<string, unknown>;
  readonly sections: Record<string, SectionResult> = {};
  /** Peak RSS figures (MiB) by process; the report names them. */
  readonly rss: Record<string, number> = {};
  /** A temporary directory for every store of the run, removed at the end. */
  readonly tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'meterline-bench-'));
  /** The environment of every `meterline` process the run starts. */
  readonly env: Record<string, string> = { EVENT_PARTITIONS: String(PARTITIONS), LOG_LEVEL: 'warn', INGEST_MAX_INFLIGHT: '1024', BILLING_SCHEDULE: '0 0 1 1 *', ANOMALY_SCHEDULE: '0 0 1 1 *' };
  nats: NatsServerHandle | undefined;
  nc: NatsConnection | undefined;
  js: JetStreamClient | undefined;
  /** `meterline start` (all roles, embedded ClickHouse). */
  child: Child | undefined;
  /** Its base URL, and the admin key's header. */
  url = '';
  auth: Record<string, string> = {};
  /** The meter of the stored events (bench/stored-events.ts), created by `start` so `meterline api` knows it. */
  storedMeterId = '';
  private readonly gens: LoadGenerator[] = [];
  private baseline: Totals | undefined;

  constructor(readonly opts: Options) {
    this.size = sizes(opts.quick, opts.scale);
    this.mode = opts.quick ? 'quick' : 'full';
    this.runName = `bench-${this.mode}${opts.scale === 1 ? '' : `-x${opts.scale}`}`;
    this.results = { mode: this.mode, scale: opts.scale, sizes: this.size, startedAt: new Date().toISOString(), machine: machine() };
    this.results.sections = this.sections;
    this.results.rssMiB = this.rss;
  }

  get budgetMs() {
    return this.opts.budgetMs;
  }

  readonly log = (s: string) => process.stderr.write(`bench [${((Date.now() - this.runStart) / 1000).toFixed(0).padStart(4)} s]: ${s}\n`);

  save() {
    fs.mkdirSync(this.opts.outDir, { recursive: true });
    fs.writeFileSync(path.join(this.opts.outDir, `${this.runName}.json`), JSON.stringify(this.results, null, 2) + '\n');
    fs.writeFileSync(path.join(this.opts.outDir, `${this.runName}.md`), markdown(this.results));
  }

  /**
   * Runs one section: its figures go into `results` as it measures them; a failure or a timeout is
   * recorded with its reason, the section's work is told to stop (`signal`), and the run goes on.
   * A section that sends events and fails has the totals re-baselined for the next ones.
   */
  async run(s: Section) {
    if (!this.opts.only || this.opts.only.has(s.name)) {
      await this.section(s.name, typeof s.timeoutMs === 'number' ? s.timeoutMs : s.timeoutMs(this), (signal) => s.run(this, signal));
      const status = this.sections[s.name]?.status;
      if (s.sendsEvents && status && status !== 'ok' && this.child && this.child.proc.exitCode === null) await this.rebaseline().catch((err: unknown) => this.log(`re-baseline failed: ${String(err)}`));
    }
    await s.after?.(this);
  }

  private async section(name: string, timeoutMs: number, fn: (signal: AbortSignal) => Promise<void>) {
    this.log(`${name}: starting (time limit ${Math.round(timeoutMs / 1000)} s)`);
    const t0 = performance.now();
    const ctl = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    const seconds = () => round((performance.now() - t0) / 1000, 1);
    try {
      await Promise.race([
        fn(ctl.signal),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new SectionTimeout(`did not finish within ${Math.round(timeoutMs / 1000)} s`)), timeoutMs);
        }),
      ]);
      this.sections[name] = { status: 'ok', seconds: seconds(), loadAverage1m: round(os.loadavg()[0]!) };
      this.log(`${name}: done in ${seconds()} s`);
    } catch (err) {
      ctl.abort();
      const error = err instanceof Error ? err.message : String(err);
      this.sections[name] = { status: err instanceof SectionTimeout ? 'timed out' : 'failed', seconds: seconds(), loadAverage1m: round(os.loadavg()[0]!), error: error.slice(0, 2_000) };
      this.log(`${name}: ${this.sections[name].status} after ${seconds()} s: ${error.slice(0, 2_000)}`);
    } finally {
      clearTimeout(timer);
    }
    this.save();
  }

  // ---- the processes: nats-server, `meterline start` ------------------------------------------

  /** nats-server, then `meterline start` on a free port, its admin key, and a NATS connection for the producers. */
  async startServices() {
    this.nats = await startNatsServer({ storeDir: path.join(this.tmp, 'nats') });
    const port = await freePort();
    this.url = `http://127.0.0.1:${port}`;
    Object.assign(this.env, { NATS_URL: this.nats.url, METERLINE_STATE_DIR: path.join(this.tmp, 'state'), PORT: String(port) });
    await this.startAll();
    this.auth = { authorization: `Bearer ${fs.readFileSync(path.join(this.tmp, 'state', 'admin-key'), 'utf8').trim()}` };
    this.nc = await connect({ servers: this.nats.url });
    this.js = jetstream(this.nc);
  }

  readyAt(base: string, timeoutMs = 60_000) {
    return waitFor(async () => (await fetch(`${base}/readyz`)).status, (s) => s === 200, timeoutMs);
  }

  /** Starts `meterline start` and waits until it is ready. */
  async startAll() {
    this.child = spawnNode('cli/main.ts', ['start'], this.env);
    await this.readyAt(this.url).catch((err: unknown) => {
      throw new Error(`meterline start did not become ready: ${String(err)}\n${this.child?.output().slice(-2_000)}`);
    });
  }

  /** Throws unless `meterline start` is running. */
  running() {
    const c = this.child;
    if (!c || c.proc.exitCode !== null || c.proc.signalCode !== null) throw new Error(`meterline start is not running${c ? `:\n${c.output().slice(-2_000)}` : ''}`);
  }

  /** Records the peak RSS of `meterline start` and stops it: the sections after it run processes of their own. */
  async stopStart() {
    if (!this.child) return;
    this.rss.startPeak = peakRssMiB(this.child.proc.pid!);
    await this.child.stop();
  }

  async request<T>(base: string, p: string, init: RequestInit = {}): Promise<T> {
    const r = await fetch(`${base}${p}`, { ...init, headers: { ...this.auth, 'content-type': 'application/json', ...(init.headers as Record<string, string>) } });
    if (!r.ok) throw new Error(`${p}: ${r.status} ${(await r.text()).slice(0, 500)}`);
    return (await r.json()) as T;
  }

  /** A request to the API of `meterline start`. */
  api<T>(p: string, init: RequestInit = {}) {
    return this.request<T>(this.url, p, init);
  }

  // ---- the load and its totals --------------------------------------------------------------------

  newGen(seed: number) {
    const g = new LoadGenerator({ seed, customers: 10_000, duplicateRate: 0.03, lateRate: 0.01, nowMs: Date.now() });
    this.gens.push(g);
    return g;
  }

  async totals(base = this.url): Promise<Totals> {
    const one = async (slug: string) => (await this.request<{ data: { value: string }[] }>(base, `/api/v1/meters/${slug}/query?${range()}`)).data[0]?.value ?? '0';
    const users = await this.request<{ data: { value: string }[] }>(base, `/api/v1/meters/users/query?groupBy=subject&${range()}`);
    return { calls: await one('calls'), tokens: await one('tokens'), bytes: await one('bytes'), users: String(users.data.reduce((a, d) => a + Number(d.value), 0)) };
  }

  /**
   * What the totals must be: the sum over every generator since the last baseline. A section that
   * failed while sending leaves an unknown number of events behind: `rebaseline` then waits for the
   * totals to settle and counts from them (unique users, which do not add up across generators,
   * are then no longer checked).
   */
  expected(): Totals {
    const b = this.baseline ?? { calls: '0', tokens: '0', bytes: '0', users: '0' };
    return {
      calls: String(this.gens.reduce((a, x) => a + x.expected.calls, Number(b.calls))),
      tokens: this.gens.reduce((a, x) => a.plus(x.expected.tokens), new Decimal(b.tokens)).toFixed(),
      bytes: this.gens.reduce((a, x) => a.plus(x.expected.bytes), new Decimal(b.bytes)).toFixed(),
      users: this.baseline ? 'not checked' : String(new Set(this.gens.flatMap((x) => [...x.expected.users])).size),
    };
  }

  private async rebaseline() {
    let last = '';
    let stableSince = Date.now();
    const deadline = Date.now() + 300_000;
    while (Date.now() < deadline) {
      const t = JSON.stringify(await this.totals());
      if (t !== last) [last, stableSince] = [t, Date.now()];
      else if (Date.now() - stableSince > 5_000) break;
      await sleep(500);
    }
    this.baseline = JSON.parse(last) as Totals;
    this.gens.length = 0;
    this.log(`totals re-baselined at ${last}`);
  }

  async waitTotals(label: string, timeoutMs = 600_000, base = this.url, want = this.expected()) {
    const same = (t: Totals) => t.calls === want.calls && t.tokens === want.tokens && t.bytes === want.bytes && (want.users === 'not checked' || t.users === want.users);
    // Poll one cheap total until the processor has caught up, then check every total exactly.
    await waitFor(async () => (await this.totals(base)).calls, (v) => v === want.calls, timeoutMs, 250).catch(() => undefined);
    return waitFor(() => this.totals(base), same, timeoutMs, 200).catch(async (err: unknown) => {
      const t = await this.totals(base);
      throw new Error(`${label}: totals wrong or late: got ${JSON.stringify(t)}, want ${JSON.stringify(want)} (${String(err)})`);
    });
  }

  /** Sends `count` events to `base` over HTTP with `inflight` concurrent batch requests; returns per-request latencies (ms). */
  async sendHttp(base: string, gen: LoadGenerator, count: number, inflight: number, signal: AbortSignal): Promise<number[]> {
    const lat: number[] = [];
    let sent = 0;
    const worker = async () => {
      while (sent < count) {
        signal.throwIfAborted();
        const size = Math.min(BATCH, count - sent);
        sent += size;
        const body = JSON.stringify(gen.batch(size));
        for (;;) {
          const t = performance.now();
          const r = await fetch(`${base}/api/v1/events`, { method: 'POST', headers: { ...this.auth, 'content-type': 'application/cloudevents-batch+json' }, body });
          await r.arrayBuffer();
          if (r.status === 202) {
            lat.push(performance.now() - t);
            break;
          }
          if (r.status !== 429 && r.status !== 503) throw new Error(`ingest answered ${r.status}`);
          signal.throwIfAborted();
          await sleep(50);
        }
      }
    };
    await Promise.all(Array.from({ length: inflight }, worker));
    return lat;
  }

  /**
   * A producer publishing straight onto JetStream. `partitioned`: as a high-volume producer should
   * (common/partition.ts's `partitionOf`, one message per partition a batch touches, on
   * `meterline.partition.<n>`); otherwise on a free-form subject, which the processor's router
   * moves onto the partitions (one more hop through NATS).
   */
  async publishNats(gen: LoadGenerator, count: number, signal: AbortSignal, partitioned: boolean) {
    const js = this.js;
    if (!js) throw new Error('no NATS connection');
    const pending: Promise<unknown>[] = [];
    for (let sent = 0; sent < count; sent += BATCH) {
      signal.throwIfAborted();
      const batch = gen.batch(Math.min(BATCH, count - sent));
      if (!partitioned) {
        pending.push(js.publish('meterline.events.bench', JSON.stringify(batch), { msgID: `bench-${gen.opts.seed}-${sent}` }));
      } else {
        const parts = new Map<number, typeof batch>();
        for (const e of batch) {
          const p = partitionOf(e.source, e.id, PARTITIONS);
          parts.set(p, [...(parts.get(p) ?? []), e]);
        }
        for (const [p, events] of parts) pending.push(js.publish(`meterline.partition.${p}`, JSON.stringify(events), { msgID: `bench-${gen.opts.seed}-${sent}@${p}` }));
      }
      while (pending.length >= 64) await pending.shift();
    }
    await Promise.all(pending);
  }

  // ---- the end: report and clean-up ---------------------------------------------------------------

  /** The derived figures, the last save, the report on stdout; then NATS stops and the temporary stores go. */
  async finish() {
    const results = this.results;
    const ceil = results.ceilingInsert as { rowsPerSecond: number } | undefined;
    const e2eH = results.e2eHttp as { eventsPerSecond: number } | undefined;
    const e2eN = results.e2eNats as { eventsPerSecond: number } | undefined;
    if (ceil && e2eH && e2eN) results.fractionOfInsertCeiling = { http: round(e2eH.eventsPerSecond / ceil.rowsPerSecond, 3), nats: round(e2eN.eventsPerSecond / ceil.rowsPerSecond, 3) };
    results.finishedAt = new Date().toISOString();
    results.totalMinutes = round((Date.now() - this.runStart) / 60_000, 1);
    this.save();
    process.stdout.write(markdown(results));
    await this.nc?.close().catch(() => undefined);
    await this.nats?.stop();
    fs.rmSync(this.tmp, { recursive: true, force: true });
  }
}
