/**
 * Meterline's benchmarks. `npm run bench` (full, ~25 minutes on 2 cores) or `npm run bench:quick`
 * (under 2 minutes). Options after `--`:
 *
 *   --scale <x>           multiply every size of the chosen mode by x (e.g. 0.01 to try the full
 *                         run's code paths in a few minutes); results are named bench-<mode>-x<x>
 *   --out <dir>           where the results go (default bench/results)
 *   --budget-minutes <m>  the whole run's time budget (full 35, quick 2): the stored-events fill
 *                         stops in time for the run to end within it, and says how far it got
 *   --only <a,b,…>        run only these sections (and `start`), to try one of them
 *
 * Writes <out>/bench-<mode>.json and .md with the machine and versions after every section, so a
 * run that is stopped or a section that fails still leaves every figure measured so far; a
 * failed or timed-out section is recorded with its reason and the run goes on. Progress goes to
 * stderr.
 *
 * Every throughput figure ends with an exact check of the totals against the generator's
 * expected values: a run with wrong totals is a failed run, not a fast one.
 *
 * Topology: a nats-server spawned here; `meterline start` (ingest, processor, API, scheduler in
 * one process, embedded ClickHouse) as a child process; `meterline ingest` as a second child for
 * the latency of a separate ingest process; `meterline api` over a separate embedded ClickHouse
 * filled with generated stored events for the usage queries; the load generator in this process.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager, type JetStreamClient } from '@nats-io/jetstream';
import { Decimal } from '../common/decimal.ts';
import { parseExact } from '../common/json-text.ts';
import { partitionOf } from '../common/partition.ts';
import { startNatsServer, freePort, type NatsServerHandle } from '../common/nats-server.ts';
import { checkEvent } from '../ingest/index.ts';
import { meterValues, type Meter } from '../meter/index.ts';
import { DedupIndex, FILTER_BUCKETS, hashKey, hashKeyBytes, STORED_KEY_BYTES } from '../processor/index.ts';
import { BENCH_METERS, LoadGenerator } from './load.ts';
import { machine, peakRssMiB, ROOT, round, sleep, spawnNode, summarize, waitFor, type Child } from './lib.ts';
import { CUSTOMERS, MONTH_END_MS, MONTH_START_MS, type StoredEventsOptions } from './stored-events.ts';

const { values: argv } = parseArgs({ options: { quick: { type: 'boolean' }, scale: { type: 'string' }, out: { type: 'string' }, 'budget-minutes': { type: 'string' }, only: { type: 'string' } } });
const quick = argv.quick ?? false;
const scale = Number(argv.scale ?? 1);
if (!(scale > 0)) throw new Error('--scale must be a positive number');
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
const BATCH = 1_000;
const n = (x: number, min = BATCH) => Math.max(min, Math.round((x * scale) / min) * min);
const base = quick ? QUICK : FULL;
const SIZE = {
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
const mode = quick ? 'quick' : 'full';
const runName = `bench-${mode}${scale === 1 ? '' : `-x${scale}`}`;
const outDir = path.resolve(argv.out ?? path.join(ROOT, 'bench', 'results'));
const budgetMs = Number(argv['budget-minutes'] ?? (quick ? 2 : 35)) * 60_000;
const runStart = Date.now();
const log = (s: string) => process.stderr.write(`bench [${((Date.now() - runStart) / 1000).toFixed(0).padStart(4)} s]: ${s}\n`);

const results: Record<string, unknown> = { mode, scale, sizes: SIZE, startedAt: new Date().toISOString(), machine: machine() };
const sections: Record<string, { status: 'ok' | 'failed' | 'timed out'; seconds: number; loadAverage1m: number; error?: string }> = {};
results.sections = sections;
const rss: Record<string, number> = {};
results.rssMiB = rss;

function save() {
  fs.mkdirSync(outDir, { recursive: true });
  fs.writeFileSync(path.join(outDir, `${runName}.json`), JSON.stringify(results, null, 2) + '\n');
  fs.writeFileSync(path.join(outDir, `${runName}.md`), markdown(results));
}

class SectionTimeout extends Error {}

/**
 * Runs one section: its figures go into `results` as it measures them; a failure or a timeout is
 * recorded with its reason, the section's work is told to stop (`signal`), and the run goes on.
 */
const only = argv.only ? new Set(['start', ...argv.only.split(',')]) : undefined;
async function section(name: string, timeoutMs: number, fn: (signal: AbortSignal) => Promise<void>) {
  if (only && !only.has(name)) return;
  log(`${name}: starting (time limit ${Math.round(timeoutMs / 1000)} s)`);
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
    sections[name] = { status: 'ok', seconds: seconds(), loadAverage1m: round(os.loadavg()[0]!) };
    log(`${name}: done in ${seconds()} s`);
  } catch (err) {
    ctl.abort();
    const error = err instanceof Error ? err.message : String(err);
    sections[name] = { status: err instanceof SectionTimeout ? 'timed out' : 'failed', seconds: seconds(), loadAverage1m: round(os.loadavg()[0]!), error: error.slice(0, 2_000) };
    log(`${name}: ${sections[name].status} after ${seconds()} s: ${error.slice(0, 2_000)}`);
  } finally {
    clearTimeout(timer);
  }
  save();
}

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'meterline-bench-'));
let nats: NatsServerHandle | undefined;
let nc: NatsConnection | undefined;
let js: JetStreamClient | undefined;
let child: Child | undefined;
let url = '';
let auth: Record<string, string> = {};
/** The stream's partitions (EVENT_PARTITIONS' default, set explicitly): the NATS producer publishes onto them. */
const PARTITIONS = 8;
const env: Record<string, string> = { EVENT_PARTITIONS: String(PARTITIONS), LOG_LEVEL: 'warn', INGEST_MAX_INFLIGHT: '1024', BILLING_SCHEDULE: '0 0 1 1 *', ANOMALY_SCHEDULE: '0 0 1 1 *' };
const readyAt = (base: string, timeoutMs = 60_000) => waitFor(async () => (await fetch(`${base}/readyz`)).status, (s) => s === 200, timeoutMs);
const startAll = async () => {
  child = spawnNode('cli/main.ts', ['start'], env);
  await readyAt(url).catch((err: unknown) => {
    throw new Error(`meterline start did not become ready: ${String(err)}\n${child?.output().slice(-2_000)}`);
  });
};
const request = async <T>(base: string, p: string, init: RequestInit = {}): Promise<T> => {
  const r = await fetch(`${base}${p}`, { ...init, headers: { ...auth, 'content-type': 'application/json', ...(init.headers as Record<string, string>) } });
  if (!r.ok) throw new Error(`${p}: ${r.status} ${(await r.text()).slice(0, 500)}`);
  return (await r.json()) as T;
};
const api = <T>(p: string, init: RequestInit = {}) => request<T>(url, p, init);
let storedMeterId = '';

// ---- 0. set-up: nats-server, `meterline start`, meters ----------------------------------------------
await section('start', 120_000, async () => {
  nats = await startNatsServer({ storeDir: path.join(tmp, 'nats') });
  const port = await freePort();
  url = `http://127.0.0.1:${port}`;
  Object.assign(env, { NATS_URL: nats.url, METERLINE_STATE_DIR: path.join(tmp, 'state'), PORT: String(port) });
  await startAll();
  auth = { authorization: `Bearer ${fs.readFileSync(path.join(tmp, 'state', 'admin-key'), 'utf8').trim()}` };
  for (const m of [...BENCH_METERS, { slug: 'fresh', eventType: 'fresh.ping', aggregation: 'COUNT' }]) await api('/api/v1/meters', { method: 'POST', body: JSON.stringify(m) });
  // The meter of the stored events (bench/stored-events.ts): created here so `meterline api` knows it.
  const stored = await api<{ id: string }>('/api/v1/meters', { method: 'POST', body: JSON.stringify({ slug: 'stored', eventType: 'stored.usage', aggregation: 'SUM', valueProperty: '$.tokens', groupBy: { model: '$.model' } }) });
  storedMeterId = stored.id;
  nc = await connect({ servers: nats.url });
  js = jetstream(nc);
});
const running = () => {
  if (!child || child.proc.exitCode !== null || child.proc.signalCode !== null) throw new Error(`meterline start is not running${child ? `:\n${child.output().slice(-2_000)}` : ''}`);
};

/**
 * Totals of the four meters over whole UTC days around now (so the day rollups answer: cheap to
 * poll while the processor works); per-customer unique users summed, as the generator counts them.
 */
const DAY = 86_400_000;
const range = () => `from=${new Date(Math.floor((Date.now() - 5 * DAY) / DAY) * DAY).toISOString()}&to=${new Date(Math.ceil((Date.now() + DAY) / DAY) * DAY).toISOString()}`;
type Totals = { calls: string; tokens: string; bytes: string; users: string };
async function totals(base = url): Promise<Totals> {
  const one = async (slug: string) => (await request<{ data: { value: string }[] }>(base, `/api/v1/meters/${slug}/query?${range()}`)).data[0]?.value ?? '0';
  const users = await request<{ data: { value: string }[] }>(base, `/api/v1/meters/users/query?groupBy=subject&${range()}`);
  return { calls: await one('calls'), tokens: await one('tokens'), bytes: await one('bytes'), users: String(users.data.reduce((a, d) => a + Number(d.value), 0)) };
}

/**
 * What the totals must be: the sum over every generator since the last baseline. A section that
 * failed while sending leaves an unknown number of events behind: `rebaseline` then waits for the
 * totals to settle and counts from them (unique users, which do not add up across generators,
 * are then no longer checked).
 */
const gens: LoadGenerator[] = [];
let baseline: Totals | undefined;
function expected(): Totals {
  const b = baseline ?? { calls: '0', tokens: '0', bytes: '0', users: '0' };
  return {
    calls: String(gens.reduce((a, x) => a + x.expected.calls, Number(b.calls))),
    tokens: gens.reduce((a, x) => a.plus(x.expected.tokens), new Decimal(b.tokens)).toFixed(),
    bytes: gens.reduce((a, x) => a.plus(x.expected.bytes), new Decimal(b.bytes)).toFixed(),
    users: baseline ? 'not checked' : String(new Set(gens.flatMap((x) => [...x.expected.users])).size),
  };
}
async function rebaseline() {
  let last = '';
  let stableSince = Date.now();
  const deadline = Date.now() + 300_000;
  while (Date.now() < deadline) {
    const t = JSON.stringify(await totals());
    if (t !== last) [last, stableSince] = [t, Date.now()];
    else if (Date.now() - stableSince > 5_000) break;
    await sleep(500);
  }
  baseline = JSON.parse(last) as Totals;
  gens.length = 0;
  log(`totals re-baselined at ${last}`);
}
/** Runs a section that sends events: if it fails, the totals are re-baselined for the next ones. */
async function sending(name: string, timeoutMs: number, fn: (signal: AbortSignal) => Promise<void>) {
  await section(name, timeoutMs, fn);
  const status = sections[name]?.status;
  if (status && status !== 'ok' && child && child.proc.exitCode === null) await rebaseline().catch((err: unknown) => log(`re-baseline failed: ${String(err)}`));
}

async function waitTotals(label: string, timeoutMs = 600_000, base = url, want = expected()) {
  const same = (t: Totals) => t.calls === want.calls && t.tokens === want.tokens && t.bytes === want.bytes && (want.users === 'not checked' || t.users === want.users);
  // Poll one cheap total until the processor has caught up, then check every total exactly.
  await waitFor(async () => (await totals(base)).calls, (v) => v === want.calls, timeoutMs, 250).catch(() => undefined);
  return waitFor(() => totals(base), same, timeoutMs, 200).catch(async (err: unknown) => {
    const t = await totals(base);
    throw new Error(`${label}: totals wrong or late: got ${JSON.stringify(t)}, want ${JSON.stringify(want)} (${String(err)})`);
  });
}
/** Messages JetStream has redelivered so far, over every consumer of the events stream (a batch not acked within the ack wait comes back). */
async function redelivered(): Promise<number> {
  if (!nc) return NaN;
  const jsm = await jetstreamManager(nc);
  let sum = 0;
  for await (const c of jsm.consumers.list('EVENTS')) sum += c.num_redelivered;
  return sum;
}
const newGen = (seed: number) => {
  const g = new LoadGenerator({ seed, customers: 10_000, duplicateRate: 0.03, lateRate: 0.01, nowMs: Date.now() });
  gens.push(g);
  return g;
};

/** The processor's inserts so far (from `/metrics`): how many, rows and seconds in all. */
async function insertStats(): Promise<{ inserts: number; rows: number; seconds: number }> {
  const text = await (await fetch(`${url}/metrics`, { headers: auth })).text();
  const metric = (name: string) => Number(/^(\S+) (\S+)$/m.exec(text.split('\n').filter((l) => l.startsWith(`${name} `)).join('\n'))?.[2] ?? 0);
  return { inserts: metric('meterline_processor_insert_latency_seconds_count'), rows: metric('meterline_processor_insert_rows_total'), seconds: metric('meterline_processor_insert_latency_seconds_sum') };
}
/** What the processor's inserts did between two `insertStats()`: their number, average rows and milliseconds. */
function insertsBetween(a: { inserts: number; rows: number; seconds: number }, b: { inserts: number; rows: number; seconds: number }) {
  const n = b.inserts - a.inserts;
  return { inserts: n, averageRows: n > 0 ? Math.round((b.rows - a.rows) / n) : 0, averageMs: n > 0 ? round(((b.seconds - a.seconds) / n) * 1000, 1) : 0 };
}

/** Sends `count` events to `base` over HTTP with `inflight` concurrent batch requests; returns per-request latencies (ms). */
async function sendHttp(base: string, gen: LoadGenerator, count: number, inflight: number, signal: AbortSignal): Promise<number[]> {
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
        const r = await fetch(`${base}/api/v1/events`, { method: 'POST', headers: { ...auth, 'content-type': 'application/cloudevents-batch+json' }, body });
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
 * Latency of batches of 100 sent at `share` of `maxRate` for SIZE.latencySeconds, 16 requests
 * at most in flight. The bodies are generated before the clock starts, so the generator's own
 * work does not compete with the process measured.
 */
async function latencyAt(base: string, maxRate: number, share: number, seed: number, signal: AbortSignal) {
  const rate = Math.round(maxRate * share);
  const gen = newGen(seed);
  const count = rate * SIZE.latencySeconds;
  const bodies: string[] = [];
  for (let s = 0; s < count; s += 100) bodies.push(JSON.stringify(gen.batch(Math.min(100, count - s))));
  const samples: number[] = [];
  let next = 0;
  const start = performance.now();
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      while (next < bodies.length) {
        signal.throwIfAborted();
        const i = next++;
        const wait = start + ((Math.min(count, (i + 1) * 100) / rate) * 1000) - performance.now();
        if (wait > 0) await sleep(wait);
        const t = performance.now();
        const r = await fetch(`${base}/api/v1/events`, { method: 'POST', headers: { ...auth, 'content-type': 'application/cloudevents-batch+json' }, body: bodies[i] });
        await r.arrayBuffer();
        if (r.status !== 202) throw new Error(`ingest answered ${r.status}`);
        samples.push(performance.now() - t);
      }
    }),
  );
  return { targetEventsPerSecond: rate, achievedEventsPerSecond: Math.round(count / ((performance.now() - start) / 1000)), latencyMs: summarize(samples) };
}

// ---- 1. end to end over HTTP ---------------------------------------------------------------
await sending('e2eHttp', 300_000, async (signal) => {
  running();
  log(`end to end over HTTP: ${SIZE.e2e} events`);
  const gen = newGen(1);
  const before = await insertStats();
  const t0 = performance.now();
  const lat = await sendHttp(url, gen, SIZE.e2e, 8, signal);
  const sendSeconds = (performance.now() - t0) / 1000;
  await waitTotals('e2e http');
  const seconds = (performance.now() - t0) / 1000;
  results.e2eHttp = { events: SIZE.e2e, unique: gen.expected.unique, seconds: round(seconds), eventsPerSecond: Math.round(SIZE.e2e / seconds), ingestAcceptedPerSecond: Math.round(SIZE.e2e / sendSeconds), batch: BATCH, requestLatencyMs: summarize(lat), totalsExact: true, processorInserts: insertsBetween(before, await insertStats()) };
  log(`  ${JSON.stringify(results.e2eHttp)}`);
});

// ---- 2. end to end over NATS -----------------------------------------------------------------
/**
 * A producer publishing straight onto JetStream. `partitioned`: as a high-volume producer should
 * (common/partition.ts's `partitionOf`, one message per partition a batch touches, on
 * `meterline.partition.<n>`); otherwise on a free-form subject, which the processor's router
 * moves onto the partitions (one more hop through NATS).
 */
async function publishNats(gen: LoadGenerator, count: number, signal: AbortSignal, partitioned: boolean) {
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
await sending('e2eNats', 300_000, async (signal) => {
  running();
  log(`end to end over NATS: ${SIZE.e2e} events`);
  const gen = newGen(2);
  const before = await insertStats();
  const t0 = performance.now();
  await publishNats(gen, SIZE.e2e, signal, true);
  await waitTotals('e2e nats');
  const seconds = (performance.now() - t0) / 1000;
  results.e2eNats = { events: SIZE.e2e, seconds: round(seconds), eventsPerSecond: Math.round(SIZE.e2e / seconds), totalsExact: true, subjects: 'meterline.partition.<n>', processorInserts: insertsBetween(before, await insertStats()) };
  log(`  ${JSON.stringify(results.e2eNats)}`);
});
await sending('e2eNatsRouted', 300_000, async (signal) => {
  running();
  log(`end to end over NATS, free-form subject through the router: ${SIZE.e2e} events`);
  const gen = newGen(3);
  const t0 = performance.now();
  await publishNats(gen, SIZE.e2e, signal, false);
  await waitTotals('e2e nats routed');
  const seconds = (performance.now() - t0) / 1000;
  results.e2eNatsRouted = { events: SIZE.e2e, seconds: round(seconds), eventsPerSecond: Math.round(SIZE.e2e / seconds), totalsExact: true, subjects: 'meterline.events.bench' };
  log(`  ${JSON.stringify(results.e2eNatsRouted)}`);
});

// ---- 3. ingest latency at 50 % and 90 % of its own maximum rate, against a separate `meterline ingest`
// (run before the all-in-one latency runs: after those, a separate ingest's first events took ~40 s
// to be stored on 2 cores; see warmUpStoredAfterSeconds and probeCatchUpSeconds in the results)
await sending('ingestLatencySeparate', 300_000, async (signal) => {
  running();
  const port = await freePort();
  const ingestUrl = `http://127.0.0.1:${port}`;
  const ingest = spawnNode('cli/main.ts', ['ingest'], { ...env, PORT: String(port), METERLINE_STATE_DIR: path.join(tmp, 'ingest-state') });
  try {
    await readyAt(ingestUrl).catch((err: unknown) => {
      throw new Error(`meterline ingest did not become ready: ${String(err)}\n${ingest.output().slice(-2_000)}`);
    });
    // A warm-up of a quarter of the probe, untimed, until the processor has stored it: a running
    // processor can stall for a while after another role starts (probeCatchUp below says how long).
    log(`separate ingest: warm-up of ${Math.round(SIZE.ingestProbe / 4)} events`);
    const redeliveredBefore = await redelivered();
    const tw = performance.now();
    await sendHttp(ingestUrl, newGen(4), Math.round(SIZE.ingestProbe / 4), 8, signal);
    await waitTotals('separate ingest warm-up');
    const warmUpSeconds = round((performance.now() - tw) / 1000, 1);
    log(`  warm-up stored after ${warmUpSeconds} s`);
    // Its own maximum accepted rate (batches of 1,000, 8 in flight), the processor of
    // `meterline start` consuming meanwhile on the same cores.
    log(`separate ingest: maximum accepted rate over ${SIZE.ingestProbe} events`);
    const t0 = performance.now();
    await sendHttp(ingestUrl, newGen(5), SIZE.ingestProbe, 8, signal);
    const probeSeconds = (performance.now() - t0) / 1000;
    const maxRate = Math.round(SIZE.ingestProbe / probeSeconds);
    await waitTotals('separate ingest probe');
    const probeCatchUpSeconds = round((performance.now() - t0) / 1000 - probeSeconds, 1);
    log(`  ${maxRate} events/s accepted; the processor caught up ${probeCatchUpSeconds} s after the last was accepted`);
    const lat: Record<string, unknown> = { process: 'meterline ingest (separate process; meterline start processes)', maxAcceptedEventsPerSecond: maxRate, warmUpEvents: Math.round(SIZE.ingestProbe / 4), warmUpStoredAfterSeconds: warmUpSeconds, probeCatchUpSeconds, batch: 100 };
    results.ingestLatencySeparate = lat;
    // The latency runs go at shares of what the pipeline sustains (see `ingestLatency`), or of
    // this ingest's own maximum when there is no end-to-end figure (e.g. `--only`).
    const sustained = (results.e2eHttp as { eventsPerSecond: number } | undefined)?.eventsPerSecond ?? maxRate;
    lat.maxSustainedEventsPerSecond = sustained;
    for (const share of [0.5, 0.9]) {
      log(`ingest latency (meterline ingest) at ${share * 100}% of ${sustained} events/s, batches of 100`);
      lat[`at${share * 100}pct`] = await latencyAt(ingestUrl, sustained, share, 6 + share, signal);
    }
    rss.ingest = peakRssMiB(ingest.proc.pid!);
    await waitTotals('separate ingest latency runs');
    lat.redeliveredMessages = (await redelivered()) - redeliveredBefore;
    log(`  ${JSON.stringify(lat)}`);
  } finally {
    await ingest.stop();
  }
});

// ---- 4. ingest latency at 50 % and 90 % of the maximum accepted rate, all roles in one process --
await sending('ingestLatency', 300_000, async (signal) => {
  running();
  // The maximum rate is what the whole pipeline sustains (the end-to-end HTTP run: accepted and
  // stored with exact totals); ingest alone accepts more for a while, with the processor falling behind.
  const e2e = results.e2eHttp as { eventsPerSecond: number; ingestAcceptedPerSecond: number } | undefined;
  const maxRate = e2e?.eventsPerSecond;
  if (!maxRate) throw new Error('needs the sustained rate of the end-to-end HTTP run');
  const lat: Record<string, unknown> = { process: 'meterline start (all roles)', maxSustainedEventsPerSecond: maxRate, maxAcceptedEventsPerSecond: e2e.ingestAcceptedPerSecond, batch: 100 };
  results.ingestLatency = lat;
  for (const share of [0.5, 0.9]) {
    log(`ingest latency (meterline start) at ${share * 100}% of ${maxRate} events/s, batches of 100`);
    lat[`at${share * 100}pct`] = await latencyAt(url, maxRate, share, 3 + share, signal);
  }
  await waitTotals('latency runs');
  log(`  ${JSON.stringify(lat)}`);
});

// ---- 5. freshness: from sending an event to seeing it in the usage API -----------------------
await section('freshness', 120_000, async (signal) => {
  running();
  log(`freshness: ${SIZE.freshness} events`);
  const sentAt = new Map<string, number>();
  const seen = new Map<string, number>();
  const from = new Date(Date.now() - 60_000).toISOString();
  const prefix = `fresh-${Date.now()}-`;
  let polling = true;
  const poller = (async () => {
    while (polling) {
      const r = await api<{ data: { subject: string }[] }>(`/api/v1/meters/fresh/query?groupBy=subject&from=${from}`);
      const t = performance.now();
      for (const d of r.data) if (!seen.has(d.subject)) seen.set(d.subject, t);
      await sleep(20);
    }
  })();
  try {
    for (let i = 0; i < SIZE.freshness; i++) {
      signal.throwIfAborted();
      const subject = `${prefix}${i}`;
      sentAt.set(subject, performance.now());
      await api('/api/v1/events', { method: 'POST', body: JSON.stringify({ specversion: '1.0', id: `${prefix}${i}`, source: 'bench', type: 'fresh.ping', subject }) });
      await sleep(50);
    }
    await waitFor(async () => [...sentAt.keys()].filter((s) => seen.has(s)).length, (k) => k === SIZE.freshness, 60_000);
  } finally {
    polling = false;
    await poller.catch(() => undefined);
  }
  results.freshness = { events: SIZE.freshness, pollIntervalMs: 20, ms: summarize([...sentAt].map(([s, t]) => seen.get(s)! - t)) };
  log(`  ${JSON.stringify(results.freshness)}`);
});

// ---- 6. processor replay: catching up on a stream that is already full -----------------------
await sending('replay', 480_000, async (signal) => {
  running();
  log(`replay: ${SIZE.replay} events published while the processor is down`);
  rss.startBeforeReplay = peakRssMiB(child!.proc.pid!);
  await child!.stop();
  const gen = newGen(9);
  await publishNats(gen, SIZE.replay, signal, true);
  const t0 = performance.now();
  await startAll();
  await waitTotals('replay');
  const seconds = (performance.now() - t0) / 1000;
  results.replay = { events: SIZE.replay, seconds: round(seconds), eventsPerSecond: Math.round(SIZE.replay / seconds), includesStartSeconds: true, totalsExact: true };
  rss.startAfterReplay = peakRssMiB(child!.proc.pid!);
  log(`  ${JSON.stringify(results.replay)}`);
});
if (child && (child.proc.exitCode !== null || child.proc.signalCode !== null) && sections.replay?.status !== 'ok') await startAll().catch((err: unknown) => log(String(err)));

// ---- 7. billing close of 10k and 100k subscriptions ---------------------------------------------
await section('close', 900_000, async (signal) => {
  running();
  await api('/api/v1/plans', {
    method: 'POST',
    body: JSON.stringify({ key: 'bench', name: 'Bench', currency: 'USD', interval: 'month', baseFee: { amount: '10', timing: 'arrears' }, charges: [{ key: 'calls', meter: 'calls', price: { model: 'graduated', tiers: [{ upTo: '100', unitPrice: '0.01' }, { upTo: null, unitPrice: '0.005' }] } }, { key: 'tokens', meter: 'tokens', price: { model: 'per_unit', unitPrice: '0.00001' } }] }),
  });
  // Every subscription starts two months ago. The first close is of that month's periods for the
  // first `closeSubs[0]` subscriptions; the next adds subscriptions up to `closeSubs[1]` and closes
  // the following month's periods of all of them, so each close finalizes only new invoices.
  const now = new Date();
  const start = Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - 2, 1);
  const months = [new Date(start).toISOString().slice(0, 7), new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - 1, 1)).toISOString().slice(0, 7)];
  const out: Record<string, unknown>[] = [];
  results.close = out;
  let created = 0;
  for (const [i, subs] of SIZE.closeSubs.entries()) {
    log(`billing close: creating customers and subscriptions up to ${subs}`);
    const t0 = performance.now();
    while (created < subs) {
      signal.throwIfAborted();
      const from = created;
      const count = Math.min(50, subs - created);
      await Promise.all(
        Array.from({ length: count }, async (_, j) => {
          const k = from + j;
          await api('/api/v1/customers', { method: 'POST', body: JSON.stringify({ key: `cust-${k}`, name: `Customer ${k}`, currency: 'USD' }) });
          await api('/api/v1/subscriptions', { method: 'POST', body: JSON.stringify({ id: `bench-${k}`, customer: `cust-${k}`, plan: 'bench', start: new Date(start).toISOString() }) });
        }),
      );
      created += count;
      if (created % 10_000 === 0) log(`  ${created} subscriptions`);
    }
    const setupSeconds = (performance.now() - t0) / 1000;
    const month = months[Math.min(i, months.length - 1)]!;
    log(`billing close of ${month}: ${subs} subscriptions`);
    const t1 = performance.now();
    const r = await api<{ invoices: unknown[]; skipped: unknown[] }>('/api/v1/billing/close', { method: 'POST', body: JSON.stringify({ period: month }) });
    const seconds = (performance.now() - t1) / 1000;
    const rssAfter = peakRssMiB(child!.proc.pid!);
    out.push({ subscriptions: subs, period: month, invoices: r.invoices.length, skipped: r.skipped.length, seconds: round(seconds), subscriptionsPerSecond: round(subs / seconds, 1), setupSeconds: round(setupSeconds, 1), startPeakRssMiBAfter: rssAfter });
    rss[`startAfterClose${subs}`] = rssAfter;
    log(`  ${JSON.stringify(out.at(-1))}`);
    save();
  }
});
if (child) {
  rss.startPeak = peakRssMiB(child.proc.pid!);
  await child.stop();
}

// ---- 8. every role in its own process: peak RSS of each -------------------------------------------
/**
 * `meterline store` (the embedded ClickHouse served over HTTP, so several processes share it),
 * `meterline processor`, `api`, `scheduler` and `ingest`, each a process of its own on the same
 * NATS (the catalog holds the close section's customers and subscriptions). SIZE.roles events go
 * in through the ingest process; the totals are checked exactly through the api process; then
 * each process's peak RSS is read. The scheduler only idles here (its cron is a year away).
 */
await section('roles', 300_000, async (signal) => {
  if (!nats) throw new Error('needs nats-server');
  const procs: Record<string, Child> = {};
  const running = (role: string, what: string, timeoutMs = 120_000) =>
    waitFor(async () => procs[role]!.output(), (o) => o.includes(what) || procs[role]!.proc.exitCode !== null, timeoutMs, 100).then((o) => {
      if (!o.includes(what)) throw new Error(`meterline ${role} did not start (no "${what}"):\n${o.slice(-2_000)}`);
    });
  try {
    const storePort = await freePort();
    procs.store = spawnNode('cli/main.ts', ['store', '--port', String(storePort), '--data-dir', path.join(tmp, 'roles-ch')], { ...env, METERLINE_STATE_DIR: path.join(tmp, 'roles-store') });
    await running('store', 'CLICKHOUSE_URL=');
    const urls: Record<string, string> = {};
    // One after the other: started all at once on 2 cores with a large catalog, one of them once
    // failed its start with "meterline: timeout".
    for (const role of ['processor', 'api', 'scheduler', 'ingest']) {
      const port = await freePort();
      urls[role] = `http://127.0.0.1:${port}`;
      procs[role] = spawnNode('cli/main.ts', [role], { ...env, PORT: String(port), METERLINE_STATE_DIR: path.join(tmp, `roles-${role}`), CLICKHOUSE_URL: `http://127.0.0.1:${storePort}` });
      await running(role, 'Meterline is running');
    }
    await readyAt(urls.api!);
    await readyAt(urls.ingest!);
    log(`roles: ${SIZE.roles} events through the separate ingest, processor, store and api`);
    const gen = new LoadGenerator({ seed: 11, customers: 10_000, duplicateRate: 0.03, lateRate: 0.01, nowMs: Date.now() });
    const t0 = performance.now();
    await sendHttp(urls.ingest!, gen, SIZE.roles, 8, signal);
    const want = { calls: String(gen.expected.calls), tokens: gen.expected.tokens.toFixed(), bytes: gen.expected.bytes.toFixed(), users: String(gen.expected.users.size) };
    await waitTotals('roles', 600_000, urls.api!, want);
    const seconds = (performance.now() - t0) / 1000;
    const peak: Record<string, number> = {};
    for (const [role, c] of Object.entries(procs)) peak[role] = peakRssMiB(c.proc.pid!);
    results.roles = { events: SIZE.roles, seconds: round(seconds), eventsPerSecond: Math.round(SIZE.roles / seconds), totalsExact: true, peakRssMiB: peak };
    for (const [role, v] of Object.entries(peak)) rss[`role_${role}`] = v;
    log(`  ${JSON.stringify(results.roles)}`);
  } finally {
    for (const role of ['ingest', 'api', 'scheduler', 'processor', 'store']) await procs[role]?.stop();
  }
});

// ---- 9. the ceiling: straight inserts, and the bare decode-and-validate loop ------------------
await section('ceilingInsert', 300_000, async () => {
  log(`insert ceiling: ${SIZE.ceiling} rows straight into ClickHouse`);
  const c = spawnNode('bench/ceiling.ts', [path.join(tmp, 'ceiling-ch'), String(SIZE.ceiling)], {});
  await new Promise((r) => c.proc.once('exit', r));
  if (c.proc.exitCode !== 0) throw new Error(`ceiling failed:\n${c.output().slice(-2_000)}`);
  const out = JSON.parse(c.output().trim().split('\n').filter((l) => l.startsWith('{')).at(-1)!) as { insertRowsPerSecond: number; rssPeakMiB: number };
  results.ceilingInsert = { rows: SIZE.ceiling, rowsPerSecond: out.insertRowsPerSecond };
  rss.ceilingProcess = out.rssPeakMiB;
  fs.rmSync(path.join(tmp, 'ceiling-ch'), { recursive: true, force: true });
  log(`  ${JSON.stringify(results.ceilingInsert)}`);
});
await section('ceilingDecode', 180_000, async () => {
  const gen = new LoadGenerator({ seed: 42, customers: 10_000, duplicateRate: 0, lateRate: 0.01, nowMs: Date.now() });
  const bodies = Array.from({ length: SIZE.decode / BATCH }, () => JSON.stringify(gen.batch(BATCH)));
  const meters = BENCH_METERS.map((m, i) => ({ ...m, id: `m${i}`, createdAt: '' }) as unknown as Meter);
  const limits = { maxFutureMs: 600_000, maxPastMs: 60 * 86_400_000 };
  const t0 = performance.now();
  let ok = 0;
  for (const b of bodies) {
    for (const item of parseExact(b).items) {
      const r = checkEvent(item, Date.now(), limits);
      if (r.ok && meterValues(r.event, meters).ok) ok++;
    }
  }
  const s = (performance.now() - t0) / 1000;
  if (ok !== SIZE.decode) throw new Error(`decode loop accepted ${ok} of ${SIZE.decode}`);
  results.ceilingDecode = { events: SIZE.decode, eventsPerSecond: Math.round(SIZE.decode / s) };
  log(`  ${JSON.stringify(results.ceilingDecode)}`);
});

// ---- 10. dedup index memory: the 24 h window at 10,000 events/s ---------------------------------
/**
 * The processor's dedup indexes (8 partitions) in the state they are in, in steady state, at
 * 10,000 events/s with a 24 h window: 864M keys in the window (`SIZE.dedupKeys`; a quick or
 * scaled run fills fewer, with filters and map scaled alike, so the bits per key, and with them
 * the false-positive rate, stay those of the target), plus the keys of the half slice before
 * the window that the oldest live filter still holds. Configuration: DEDUP_FILTER_MEMORY=1GiB
 * and the default DEDUP_MAX_MEMORY_KEYS=2M, split over the partitions as the processor does.
 *
 * Keys go to partition `i mod 8`, at evenly spread acceptance times. The older keys enter the
 * filters only, as the start-up load puts them (`loadPacked`: two hashes and a time), hashed
 * from their UTF-8 bytes written in place (the same hashes as `hashKey` of the string: checked
 * on a sample), so the fill takes minutes, not the half hour that making 970M strings takes;
 * the newest keys, as many as the maps hold, go through `add()` as the processor adds them
 * (its per-key rate). Then: memory after a gc, the share of 1M never-seen keys that would need
 * a store look-up, and a check on a sample that no key of the window would pass as new.
 */
await section('dedupMemory', 900_000, async (signal) => {
  const partitions = 8;
  const windowMs = 86_400_000;
  const keys = SIZE.dedupKeys;
  const scaleOfTarget = keys / 864_000_000;
  const filterBytes = Math.floor(2 ** 30 * scaleOfTarget);
  const mapKeys = Math.max(partitions * 1_000, Math.floor(2_000_000 * scaleOfTarget));
  const perPartitionKeys = Math.floor(mapKeys / partitions);
  // Steady state, measured half-way into a slice: the window (nowMs - 24 h, nowMs] holds `keys`
  // keys, and the oldest live filter also the keys of the half slice before it (12.5 % more).
  const span = windowMs / FILTER_BUCKETS;
  const nowMs = Math.floor(Date.now() / span) * span - windowMs + span / 2;
  const fillStartMs = nowMs - windowMs - span / 2;
  const total = Math.round(keys * (1 + span / 2 / windowMs));
  const atOf = (i: number) => fillStartMs + Math.floor((i * (windowMs + span / 2)) / total);
  const keyOf = (i: number) => `12:gateway-prod\u0000evt_${(i * 2654435761) % 4294967296}_${i}`;

  // The UTF-8 bytes of keyOf(i), written in place (two digits at a time), and their hashes.
  const bytes = new Uint8Array(64);
  const head = new TextEncoder().encode('12:gateway-prod\u0000evt_');
  bytes.set(head);
  const pairs = new Uint8Array(200).map((_, i) => 48 + (i % 2 === 0 ? Math.floor(i / 20) : (i >> 1) % 10));
  const digits = (x: number, at: number) => {
    let len = 1;
    for (let p = 10; x >= p; p *= 10) len++;
    let q = at + len;
    for (; x >= 100; q -= 2) {
      const y = Math.floor(x / 100);
      const r = 2 * (x - 100 * y);
      bytes[q - 2] = pairs[r]!;
      bytes[q - 1] = pairs[r + 1]!;
      x = y;
    }
    if (x >= 10) {
      bytes[q - 2] = pairs[2 * x]!;
      bytes[q - 1] = pairs[2 * x + 1]!;
    } else bytes[q - 1] = 48 + x;
    return at + len;
  };
  const h = new Uint32Array(2);
  const hashOf = (i: number) => {
    let n = digits((i * 2654435761) % 4294967296, head.length);
    bytes[n++] = 95; // _
    n = digits(i, n);
    hashKeyBytes(bytes, n, h);
  };
  const check = new Uint32Array(2);
  for (const i of [0, 1, 9, 10, 99, 100, 101, 12_345, total - 1]) {
    hashOf(i);
    hashKey(keyOf(i), check);
    if (h[0] !== check[0] || h[1] !== check[1]) throw new Error(`in-place hash of key ${i} differs from hashKey`);
  }

  global.gc?.();
  const before = process.memoryUsage();
  const firstAdded = total - partitions * perPartitionKeys; // from here on, keys go through add()
  const indexes = Array.from({ length: partitions }, () => new DedupIndex(windowMs, perPartitionKeys, atOf(firstAdded), { filterBytes: Math.floor(filterBytes / partitions) }));
  const chunkKeys = 8_192;
  const chunks = Array.from({ length: partitions }, () => ({ view: new DataView(new ArrayBuffer(chunkKeys * STORED_KEY_BYTES)), n: 0 }));
  const flush = (p: number) => {
    const c = chunks[p]!;
    indexes[p]!.loadPacked(new Uint8Array(c.view.buffer, 0, c.n * STORED_KEY_BYTES), nowMs);
    c.n = 0;
  };
  const t0 = performance.now();
  for (let i = 0; i < firstAdded; i++) {
    if ((i & 0xfffff) === 0) {
      signal.throwIfAborted();
      if (i > 0 && (i & 0x3ffffff) === 0) log(`  dedup fill: ${i.toLocaleString('en-US')} keys, ${Math.round(i / ((performance.now() - t0) / 1000)).toLocaleString('en-US')}/s`);
    }
    hashOf(i);
    const c = chunks[i % partitions]!;
    const o = c.n * STORED_KEY_BYTES;
    const at = atOf(i);
    c.view.setUint32(o, h[0]!, true);
    c.view.setUint32(o + 4, h[1]!, true);
    c.view.setUint32(o + 8, at % 4294967296, true);
    c.view.setUint32(o + 12, Math.floor(at / 4294967296), true);
    if (++c.n === chunkKeys) flush(i % partitions);
  }
  for (let p = 0; p < partitions; p++) flush(p);
  for (const ix of indexes) ix.filtersCompleteFrom(fillStartMs); // as after a start-up load: every key since then is in
  const loadSeconds = (performance.now() - t0) / 1000;

  // The newest keys, as strings through add(), in batches of 1,000 events (0.1 s at 10k/s).
  let addMs = 0;
  for (let i = firstAdded; i < total; i += 1_000) {
    const batch: string[][] = Array.from({ length: partitions }, () => []);
    for (let j = i; j < Math.min(total, i + 1_000); j++) batch[j % partitions]!.push(keyOf(j));
    const at = atOf(i);
    const t = performance.now();
    for (let p = 0; p < partitions; p++) indexes[p]!.add(batch[p]!, at);
    addMs += performance.now() - t;
  }
  global.gc?.();
  const after = process.memoryUsage();

  // 1M keys never added: the share a fresh event costs a store look-up.
  let lookups = 0;
  const probes = 1_000_000;
  for (let i = 0; i < probes; i++) {
    const k = `12:gateway-prod\u0000new_${(i * 2654435761) % 4294967296}_${i}`;
    const ix = indexes[i % partitions]!;
    if (ix.has(k, nowMs)) throw new Error(`a key never added is held: ${k}`);
    if (ix.needsStoreLookup(k, nowMs)) lookups++;
  }
  // Every key of the window is either held or looked up (a sample of them).
  for (let i = 0; i < total; i += Math.max(1, Math.floor(total / 100_000))) {
    const k = keyOf(i);
    const ix = indexes[i % partitions]!;
    if (atOf(i) > nowMs - windowMs && !ix.has(k, nowMs) && !ix.needsStoreLookup(k, nowMs)) throw new Error(`key ${i} of the window would be taken as new`);
  }
  const stats = indexes.map((ix) => ix.filterStats(nowMs)!);
  const mib = (b: number) => round(b / 2 ** 20, 1);
  const rssDelta = after.rss - before.rss;
  let firstInWindow = 0; // the first key accepted after nowMs - window
  for (let lo = 0, hi = total; lo < hi; ) {
    const mid = Math.floor((lo + hi) / 2);
    if (atOf(mid) > nowMs - windowMs) hi = firstInWindow = mid;
    else lo = firstInWindow = mid + 1;
  }
  results.dedupMemory = {
    keys,
    keysInWindow: total - firstInWindow,
    keysInFilters: total,
    scaleOfTarget,
    partitions,
    gcExposed: typeof global.gc === 'function',
    keyExample: '12:gateway-prod\\u0000evt_<10 digits>_<n> (~35 characters)',
    config: { DEDUP_WINDOW: '24h', DEDUP_FILTER_MEMORY: `${mib(filterBytes)}MiB`, DEDUP_MAX_MEMORY_KEYS: mapKeys, filterBuckets: FILTER_BUCKETS },
    mapKeys: indexes.reduce((a, ix) => a + ix.size, 0),
    filterKeys: stats.reduce((a, s) => a + s.keys, 0),
    rssMiB: { before: mib(before.rss), after: mib(after.rss), delta: mib(rssDelta) },
    heapUsedMiB: { before: mib(before.heapUsed), after: mib(after.heapUsed) },
    arrayBuffersMiB: { before: mib(before.arrayBuffers), after: mib(after.arrayBuffers) },
    // The heap and array buffers the indexes added: RSS only says so in a fresh process (after
    // other sections it reuses memory it already holds, and its delta reads low).
    bytesPerKey: round((after.heapUsed - before.heapUsed + after.arrayBuffers - before.arrayBuffers) / keys, 2),
    rssBytesPerKey: round(rssDelta / keys, 2),
    // what the indexes hold (map on the heap, filters in array buffers), scaled to 864M keys in the window
    indexMiBAtTarget: mib((after.heapUsed - before.heapUsed + after.arrayBuffers - before.arrayBuffers) / scaleOfTarget),
    storeLookupShare: round(lookups / probes, 4),
    expectedStoreLookupShare: round(stats.reduce((a, s) => a + s.expectedFpr, 0) / partitions, 4),
    filterLoadKeysPerSecond: Math.round(firstAdded / loadSeconds),
    addKeysPerSecond: Math.round((total - firstAdded) / (addMs / 1000)),
    fillSeconds: round(loadSeconds + addMs / 1000, 1),
  };
  log(`  dedup: ${JSON.stringify(results.dedupMemory)}`);
});

// ---- 11. usage queries over generated stored events, through `meterline api` --------------------
/**
 * For each size: bench/stored-events.ts (its own process) brings the stored events of the
 * `stored` meter up to that size in a separate embedded ClickHouse; then `meterline api` opens
 * that ClickHouse and answers a customer's month by hour over HTTP (the hour rollup answers:
 * checked on every response), p50/p99 over SIZE.queries customers after 10 warm-up queries. The last
 * stage's fill stops at the run's budget (less two minutes for the queries) and says how far it got.
 */
await section('usageQueries', Math.max(600_000, budgetMs - (Date.now() - runStart) + 300_000), async (signal) => {
  if (!nats || !storedMeterId) throw new Error('needs nats-server and the stored meter from the start section');
  const dataDir = path.join(tmp, 'stored-ch');
  const out: Record<string, unknown> = { customers: CUSTOMERS, month: '2026-10', meter: 'stored (SUM of $.tokens, by model)', method: 'bench/stored-events.ts: generated by ClickHouse into meter_values and meter_usage_1h_v2 with the views\' own SELECTs (see check)' };
  results.usageQueries = out;
  let stored = 0;
  for (const [i, target] of SIZE.queryRows.entries()) {
    signal.throwIfAborted();
    const opts: StoredEventsOptions = {
      dataDir,
      db: 'meterline',
      meterId: storedMeterId,
      fromRows: stored,
      toRows: target,
      deadlineMs: Math.max(runStart + budgetMs - 120_000, Date.now() + 60_000),
      checkRows: i === 0 ? SIZE.checkRows : 0,
      checkDensityRows: Math.max(...SIZE.queryRows),
    };
    log(`stored events: ${stored} → ${target} rows${opts.checkRows ? `, after checking the shortcut on ${opts.checkRows} events through events_raw and every view` : ''}`);
    const fill = spawnNode('bench/stored-events.ts', [JSON.stringify(opts)], {});
    fill.proc.stderr!.on('data', (b: Buffer) => b.toString().split('\n').filter((l) => l.startsWith('stored-events:')).forEach((l) => log(`  ${l}`)));
    const onAbort = () => void fill.stop('SIGKILL');
    signal.addEventListener('abort', onAbort);
    await new Promise((r) => fill.proc.once('exit', r));
    signal.removeEventListener('abort', onAbort);
    const line = fill.output().trim().split('\n').filter((l) => l.startsWith('{')).at(-1);
    if (!line) throw new Error(`stored-events failed:\n${fill.output().slice(-2_000)}`);
    const f = JSON.parse(line) as {
      check?: unknown;
      fill: { rows: number; seconds: number; cpuSeconds: number; rowsPerSecond: number; complete: boolean };
      storedRows: number;
      samples: { subject: string; raw: { count: string; sum: string }; equal: boolean }[];
      hourRollup: unknown;
      rssPeakMiB: number;
    };
    if (f.check) out.check = f.check;
    if (fill.proc.exitCode !== 0) throw new Error(`stored-events: rollup totals differ from raw totals: ${JSON.stringify(f.samples)}`);
    stored = f.storedRows;
    rss[`storedEventsFill${target}`] = f.rssPeakMiB;
    const stage: Record<string, unknown> = { targetRows: target, storedRows: stored, complete: f.fill.complete, fill: f.fill, rollupEqualsRaw: f.samples, hourRollup: f.hourRollup };
    out[String(target)] = stage;
    save();
    log(`  ${JSON.stringify(f.fill)}`);

    const port = await freePort();
    const apiUrl = `http://127.0.0.1:${port}`;
    const apiProc = spawnNode('cli/main.ts', ['api'], { ...env, PORT: String(port), METERLINE_STATE_DIR: path.join(tmp, 'api-state'), CLICKHOUSE_DATA_DIR: dataDir, CLICKHOUSE_DATABASE: 'meterline' });
    try {
      await readyAt(apiUrl, 120_000).catch((err: unknown) => {
        throw new Error(`meterline api did not become ready: ${String(err)}\n${apiProc.output().slice(-2_000)}`);
      });
      const q = (subject: string) =>
        request<{ source: string; data: { value: string }[] }>(apiUrl, `/api/v1/meters/stored/query?subject=${subject}&windowSize=HOUR&windowTimeZone=UTC&from=${new Date(MONTH_START_MS).toISOString()}&to=${new Date(MONTH_END_MS).toISOString()}`);
      // The API's answer for the sample customers equals their raw totals.
      for (const s of f.samples) {
        const r = await q(s.subject);
        const sum = r.data.reduce((a, d) => a.plus(d.value), new Decimal(0));
        if (!sum.eq(s.raw.sum) || r.source !== 'meter_usage_1h_v2') throw new Error(`usage API for ${s.subject}: ${sum.toFixed()} from ${r.source}, raw total ${s.raw.sum}`);
      }
      const samples: number[] = [];
      let windows = 0;
      for (let k = 0; k < SIZE.queries + 10; k++) {
        signal.throwIfAborted();
        const t = performance.now();
        const r = await q(`cust-${(k * 97) % CUSTOMERS}`);
        if (k >= 10) samples.push(performance.now() - t); // the first ten warm caches
        if (r.source !== 'meter_usage_1h_v2') throw new Error(`answered from ${r.source}, not the hour rollup`);
        windows += r.data.length;
      }
      const sum = summarize(samples);
      Object.assign(stage, { p50Ms: sum.p50, p99Ms: sum.p99, maxMs: sum.max, n: sum.n, source: 'meter_usage_1h_v2', meanWindowsPerAnswer: Math.round(windows / (SIZE.queries + 10)), apiSampleTotalsEqualRaw: true });
      rss[`api${target}`] = peakRssMiB(apiProc.proc.pid!);
      log(`  ${stored} stored events: p50 ${sum.p50} ms, p99 ${sum.p99} ms`);
    } finally {
      await apiProc.stop();
    }
    save();
    if (!f.fill.complete) throw new Error(`the fill stopped at ${stored.toLocaleString('en-US')} of ${target.toLocaleString('en-US')} rows to stay within the run's budget of ${budgetMs / 60_000} minutes (queries above ran at ${stored.toLocaleString('en-US')})`);
  }
});

// ---- report ---------------------------------------------------------------------------------------
const ceil = results.ceilingInsert as { rowsPerSecond: number } | undefined;
const e2eH = results.e2eHttp as { eventsPerSecond: number } | undefined;
const e2eN = results.e2eNats as { eventsPerSecond: number } | undefined;
if (ceil && e2eH && e2eN) results.fractionOfInsertCeiling = { http: round(e2eH.eventsPerSecond / ceil.rowsPerSecond, 3), nats: round(e2eN.eventsPerSecond / ceil.rowsPerSecond, 3) };
results.finishedAt = new Date().toISOString();
results.totalMinutes = round((Date.now() - runStart) / 60_000, 1);
save();
process.stdout.write(markdown(results));
await nc?.close().catch(() => undefined);
await nats?.stop();
fs.rmSync(tmp, { recursive: true, force: true });

function markdown(r: Record<string, unknown>): string {
  const m = r.machine as ReturnType<typeof machine>;
  const num = (x: number) => x.toLocaleString('en-US');
  const lines = [
    `# Meterline benchmark (${r.mode}${r.scale === 1 ? '' : `, sizes × ${String(r.scale)}`})`,
    '',
    `${String(r.startedAt)} · ${m.cpus} cores (${m.cpuModel}), ${m.memoryGiB} GiB · Node ${m.node} · ${m.nats} · chDB ${m.chdb} (ClickHouse embedded)` +
      (r.finishedAt ? ` · ${String(r.totalMinutes)} minutes` : ' · **run in progress or stopped**'),
    '',
    '| figure | value | target |',
    '|---|---|---|',
  ];
  const row = (f: () => [string, string, string?] | [string, string, string?][]) => {
    try {
      const x = f();
      for (const [a, b, c] of (Array.isArray(x[0]) ? x : [x]) as [string, string, string?][]) lines.push(`| ${a} | ${b} | ${c ?? ''} |`);
    } catch {
      /* not measured */
    }
  };
  type Lat = { targetEventsPerSecond: number; latencyMs: { p50: number; p99: number } };
  const latRows = (key: 'ingestLatency' | 'ingestLatencySeparate', label: string, ofWhat: string) => () =>
    Object.entries(r[key] as Record<string, Lat>)
      .filter(([k]) => k.startsWith('at'))
      .map(([k, v]) => [`ingest latency, ${label}, at ${k.slice(2, -3)} % of ${ofWhat} (${num(v.targetEventsPerSecond)} events/s, batches of 100)`, `p50 ${v.latencyMs.p50} ms, p99 ${v.latencyMs.p99} ms`, k === 'at50pct' ? 'p99 < 50 ms' : ''] as [string, string, string]);
  const e2eHttp = r.e2eHttp as { events: number; eventsPerSecond: number } | undefined;
  const e2eNats = r.e2eNats as { events: number; eventsPerSecond: number } | undefined;
  row(() => [`end to end, HTTP, ${num(e2eHttp!.events)} events (exact totals)`, `${num(e2eHttp!.eventsPerSecond)} events/s`, '≥ 100,000']);
  row(() => [`end to end, NATS, producer publishing on the partitions' subjects, ${num(e2eNats!.events)} events (exact totals)`, `${num(e2eNats!.eventsPerSecond)} events/s`, '≥ 100,000']);
  row(() => {
    const x = r.e2eNatsRouted as { events: number; eventsPerSecond: number };
    return [`end to end, NATS, producer publishing on a free-form subject (the router moves events onto partitions), ${num(x.events)} events (exact totals)`, `${num(x.eventsPerSecond)} events/s`];
  });
  row(() => {
    const x = r.roles as { events: number; eventsPerSecond: number };
    return [`end to end, every role in its own process (\`meterline store\` serving ClickHouse over HTTP), ${num(x.events)} events (exact totals)`, `${num(x.eventsPerSecond)} events/s`];
  });
  row(() => ['insert ceiling (same rows straight into ClickHouse)', `${num((r.ceilingInsert as { rowsPerSecond: number }).rowsPerSecond)} rows/s`]);
  row(() => ['end to end as a fraction of the insert ceiling', `HTTP ${(r.fractionOfInsertCeiling as { http: number }).http}, NATS ${(r.fractionOfInsertCeiling as { nats: number }).nats}`, '≥ 0.5']);
  row(() => ['decode + validate + meter values (one core)', `${num((r.ceilingDecode as { eventsPerSecond: number }).eventsPerSecond)} events/s`]);
  row(latRows('ingestLatency', '`meterline start` (all roles in one process)', 'the rate the pipeline sustains end to end'));
  row(latRows('ingestLatencySeparate', 'separate `meterline ingest` process', 'the rate the pipeline sustains end to end'));
  row(() => {
    const x = r.ingestLatencySeparate as { maxAcceptedEventsPerSecond: number };
    return ['maximum rate a separate `meterline ingest` accepts (batches of 1,000, 8 in flight; the processor falls behind)', `${num(x.maxAcceptedEventsPerSecond)} events/s`];
  });
  row(() => {
    const f = r.freshness as { events: number; ms: { p50: number; p99: number } };
    return [`freshness (send → visible in the usage API), ${num(f.events)} events`, `p50 ${f.ms.p50} ms, p99 ${f.ms.p99} ms`, 'p99 < 2 s'];
  });
  row(() => {
    const x = r.replay as { events: number; eventsPerSecond: number };
    return [`processor replay of ${num(x.events)} events (incl. process start and dedup load)`, `${num(x.eventsPerSecond)} events/s`];
  });
  type Stage = { storedRows: number; complete: boolean; p50Ms: number; p99Ms: number; fill: { rows: number; seconds: number; rowsPerSecond: number } };
  row(() =>
    Object.entries(r.usageQueries as Record<string, Stage>)
      .filter(([k, v]) => /^\d+$/.test(k) && v.p50Ms !== undefined)
      .map(([, v]) => [`usage query over HTTP, a customer's month by hour, ${num(v.storedRows)} stored events${v.complete ? '' : ' (fill stopped early: partial)'}`, `p50 ${v.p50Ms} ms, p99 ${v.p99Ms} ms`, 'p99 < 50 ms, flat'] as [string, string, string]),
  );
  row(() =>
    (r.close as { subscriptions: number; seconds: number; subscriptionsPerSecond: number; startPeakRssMiBAfter: number }[]).map((c) => [
      `billing close, ${num(c.subscriptions)} subscriptions`,
      `${c.seconds} s (${num(Math.round(c.subscriptionsPerSecond))}/s); peak RSS of \`meterline start\` after it ${c.startPeakRssMiBAfter} MiB`,
      c.subscriptions >= 100_000 ? '100,000 in < 60 s' : '',
    ] as [string, string, string]),
  );
  row(() => {
    const d = r.dedupMemory as {
      keys: number;
      scaleOfTarget: number;
      rssMiB: { after: number; delta: number };
      heapUsedMiB: { before: number; after: number };
      arrayBuffersMiB: { before: number; after: number };
      indexMiBAtTarget: number;
      bytesPerKey: number;
      storeLookupShare: number;
      addKeysPerSecond: number;
      filterLoadKeysPerSecond: number;
    };
    const at =
      d.scaleOfTarget === 1
        ? `864M keys in the window: the indexes hold ${num(d.indexMiBAtTarget)} MiB (${num(round(d.arrayBuffersMiB.after - d.arrayBuffersMiB.before, 1))} MiB of filters + ${num(round(d.heapUsedMiB.after - d.heapUsedMiB.before, 1))} MiB of heap for the exact keys; ${d.bytesPerKey} bytes/key)`
        : `${num(d.keys)} keys, filters and map scaled to ${round(d.scaleOfTarget * 100, 2)} % of the target; their heap + buffers scaled linearly to 864M keys: ${num(d.indexMiBAtTarget)} MiB`;
    return [
      'dedup index, 24 h at 10k/s in 8 partitions (1GiB of filters, 2M exact keys)',
      `${at}; ${round(d.storeLookupShare * 100, 1)} % of fresh keys looked up in the store; add() ${num(d.addKeysPerSecond)} keys/s, filter load ${num(d.filterLoadKeysPerSecond)} keys/s`,
      '24 h at 10k/s (864 M keys) within 1.5 GiB',
    ];
  });
  const x = r.rssMiB as Record<string, number>;
  const rssRow = (label: string, v: number | undefined) => v !== undefined && lines.push(`| peak RSS, ${label} | ${v} MiB | |`);
  rssRow('`meterline start` (ingest, processor, API, scheduler in one process; embedded ClickHouse), whole run', x.startPeak ?? x.startAfterReplay ?? x.startBeforeReplay);
  rssRow('`meterline ingest` (separate process, during its latency runs)', x.ingest);
  const roleLabel: Record<string, string> = {
    store: '`meterline store` (embedded ClickHouse served to the other roles)',
    processor: '`meterline processor`',
    api: '`meterline api`',
    scheduler: `\`meterline scheduler\` (idle; ${num(Math.max(...(r.sizes as typeof SIZE).closeSubs))} subscriptions in its catalog)`,
    ingest: '`meterline ingest`',
  };
  const roles = r.roles as { events: number } | undefined;
  for (const [k, v] of Object.entries(x).filter(([k]) => k.startsWith('role_'))) rssRow(`${roleLabel[k.slice(5)] ?? k.slice(5)}, every role in its own process, ${num(roles?.events ?? 0)} events`, v);
  for (const [k, v] of Object.entries(x).filter(([k]) => /^api\d+$/.test(k))) rssRow(`\`meterline api\` (embedded ClickHouse holding ${num(Number(k.slice(3)))} stored events, answering the usage queries)`, v);
  for (const [k, v] of Object.entries(x).filter(([k]) => /^storedEventsFill\d+$/.test(k))) rssRow(`ClickHouse generating the stored events up to ${num(Number(k.slice(16)))}`, v);

  type Check = { events: number; identical: boolean; throughEventsRawAndEveryView: { rowsPerSecond: number }; shortcut: { rowsPerSecond: number } };
  const q = r.usageQueries as Record<string, unknown> & { check?: Check } | undefined;
  if (q) {
    const largest = Math.max(...(r.sizes as typeof SIZE).queryRows);
    lines.push(
      '',
      `**Stored events** (the usage-query rows). Generated by ClickHouse itself (\`bench/stored-events.ts\`, \`INSERT … SELECT … FROM numbers()\`): ${num(CUSTOMERS)} customers (uniform), ` +
        'one SUM meter with a `model` dimension, each stage spread evenly over October 2026. Written straight into `meter_values` and `meter_usage_1h_v2` ' +
        "(the tables a customer's month by hour reads) with the materialized views' own SELECTs; events_raw, event_keys and the minute and day rollups are not filled.",
    );
    if (q.check) {
      const v = q.check.throughEventsRawAndEveryView.rowsPerSecond;
      lines.push(
        '',
        `The production path (insert into events_raw, five materialized views) stored ${num(v)} events/s on a sample of ${num(q.check.events)} events, ` +
          `which would take ~${Math.max(1, Math.round(largest / v / 60))} min for ${num(largest)}; the direct path ${num(q.check.shortcut.rowsPerSecond)} events/s on the same sample. ` +
          `Both paths stored identical \`meter_values\` rows and identical hour states (every group, every state finalized) on that sample: **${q.check.identical ? 'yes' : 'NO'}**.`,
      );
    }
    lines.push('');
    for (const [k, v] of Object.entries(q).filter(([k]) => /^\d+$/.test(k))) {
      const s = v as Stage & { rollupEqualsRaw: { equal: boolean }[]; fill: { cpuSeconds: number }; hourRollup: { parts: number; mergeWaitSeconds: number } };
      lines.push(
        `- ${num(Number(k))}: ${num(s.storedRows)} stored, the last ${num(s.fill.rows)} in ${s.fill.seconds} s (${num(s.fill.rowsPerSecond)} rows/s, ${s.fill.cpuSeconds} CPU s)${s.complete ? '' : ', **stopped early (time budget)**'}; ` +
          `hour rollup in ${s.hourRollup.parts} parts when queried (after ${s.hourRollup.mergeWaitSeconds} s of background merges); its totals equal the raw totals for the sample customers: ${s.rollupEqualsRaw.every((e) => e.equal) ? 'yes' : 'NO'}.`,
      );
    }
  }

  lines.push('', '| section | status | seconds | load average (1 min) at its end |', '|---|---|---|---|');
  for (const [k, v] of Object.entries(r.sections as typeof sections)) lines.push(`| ${k} | ${v.status}${v.error ? `: ${v.error.split('\n')[0]!.replaceAll('|', '\\|').slice(0, 300)}` : ''} | ${v.seconds} | ${v.loadAverage1m} |`);
  lines.push(
    '',
    `Raw figures: the JSON file beside this one. Reproduce: \`npm run bench${r.mode === 'quick' ? ':quick' : ''}${r.scale === 1 ? '' : ` -- --scale ${String(r.scale)}`}\`.`,
    '',
  );
  return lines.join('\n');
}
