/**
 * The fault-injection suite (`npm run test:faults`): Meterline split into its roles as separate
 * processes on loopback — nats-server (one, or a 3-node cluster with R3 streams), `meterline
 * store` (embedded ClickHouse served over HTTP), several `meterline processor`s sharing the
 * partitions, `meterline ingest` — while producers send events and the scenario kills,
 * freezes and restarts parts. Every run checks exact totals against the events the producers
 * were acknowledged for: none lost, none doubled, rollups equal to the raw events.
 *
 *   npm run test:faults                       every scenario, default runs
 *   npm run test:faults -- --runs 10          more runs of the processor-kill scenario
 *   npm run test:faults -- --only store       one scenario (processor | nats | ingest | store | allinone)
 *   npm run test:faults -- --out bench/results/faults.md
 *
 * Exits 1 if any run lost or doubled an event (or could not finish).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfig } from '../../common/config.ts';
import { silentLogger } from '../../common/logger.ts';
import { partitionConsumer, ROUTER_CONSUMER, type NatsClients } from '../../common/nats.ts';
import { startNatsCluster, startNatsServer, type NatsClusterHandle, type NatsServerHandle } from '../../common/nats-server.ts';
import { partitionOf } from '../../common/partition.ts';
import { seededRandom } from '../../common/random.ts';
import { startRuntime, type Runtime } from '../../cli/runtime.ts';
import { ingestProcess, processorProcess, RoleProcess, sleep, storeProcess } from './cluster.ts';
import { openStore } from '../../common/clickhouse.ts';
import { freePort } from '../../common/nats-server.ts';
import { natsTopology } from '../../cli/runtime.ts';
import { openNats } from '../../common/nats.ts';

const { values: args } = parseArgs({
  options: {
    runs: { type: 'string', default: '5' },
    only: { type: 'string' },
    out: { type: 'string' },
    events: { type: 'string', default: '12000' },
    help: { type: 'boolean', short: 'h' },
  },
});
if (args.help) {
  process.stdout.write(fs.readFileSync(new URL(import.meta.url), 'utf8').split('*/')[0]!.replace(/^\/\*\*|^ \* ?/gm, '') + '\n');
  process.exit(0);
}
const RUNS = Math.max(1, Number(args.runs));
const EVENTS = Math.max(1000, Number(args.events));
const PARTITIONS = 8;
const say = (s: string) => process.stderr.write(s + '\n');

interface RunResult {
  seed: number;
  acked: number;
  counted: number;
  lost: number;
  doubled: number;
  rollupsExact: boolean;
  note: string;
  error?: string;
}

interface ScenarioResult {
  name: string;
  title: string;
  runs: RunResult[];
  notes: string[];
  seconds: number;
}

// ---- an environment: NATS, store, api (in this process), processors ------------------------

interface Env {
  dir: string;
  nats: NatsClients;
  natsServer?: NatsServerHandle;
  natsCluster?: NatsClusterHandle;
  store: RoleProcess;
  storeUrl: string;
  api: Runtime;
  adminKey: string;
  env: Record<string, string>;
  processors: RoleProcess[];
  stop(): Promise<void>;
}

async function environment(opts: { cluster?: boolean; processors: number }): Promise<Env> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meterline-faults-'));
  let natsUrl: string;
  let natsServer: NatsServerHandle | undefined;
  let natsCluster: NatsClusterHandle | undefined;
  if (opts.cluster) {
    natsCluster = await startNatsCluster({ dir: path.join(dir, 'nats') });
    natsUrl = natsCluster.url;
  } else {
    natsServer = await startNatsServer({ storeDir: path.join(dir, 'nats') });
    natsUrl = natsServer.url;
  }
  const base = { METERLINE_STATE_DIR: path.join(dir, 'state'), NATS_URL: natsUrl, NATS_REPLICAS: opts.cluster ? '3' : '1' };
  const { proc: store, url: storeUrl } = await storeProcess(path.join(dir, 'chdb'), base);
  const env: Record<string, string> = {
    ...base,
    CLICKHOUSE_URL: storeUrl,
    CLICKHOUSE_DATABASE: 'faults',
    EVENT_PARTITIONS: String(PARTITIONS),
    PROCESSOR_LEASE_TTL: '3s',
    PROCESSOR_ACK_WAIT: '6s',
  };
  const config = loadConfig({ ...env, PORT: '0', LOG_LEVEL: 'silent' });
  const api = await startRuntime(config, ['api'], silentLogger());
  const adminKey = api.firstAdminKey ?? (await api.keys.create('faults admin', ['admin'])).key;
  for (const meter of [
    { slug: 'calls', eventType: 'fault', aggregation: 'COUNT' },
    { slug: 'tokens', eventType: 'fault', aggregation: 'SUM', valueProperty: '$.tokens' },
  ]) {
    const r = await api.app!.inject({ method: 'POST', url: '/api/v1/meters', headers: { authorization: `Bearer ${adminKey}`, 'content-type': 'application/json' }, payload: JSON.stringify(meter) });
    if (r.statusCode !== 201) throw new Error(`create meter: ${r.statusCode} ${r.body}`);
  }
  const processors = Array.from({ length: opts.processors }, (_, i) => processorProcess(`p${i + 1}`, env));
  await Promise.all(processors.map((p) => p.start()));
  return {
    dir,
    nats: api.nats,
    natsServer,
    natsCluster,
    store,
    storeUrl,
    api,
    adminKey,
    env,
    processors,
    async stop() {
      await Promise.all(processors.map((p) => p.kill('SIGTERM')));
      await api.stop();
      await store.kill('SIGTERM');
      await natsServer?.stop();
      await natsCluster?.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

// ---- producers ---------------------------------------------------------------------------

interface Produced {
  /** Ids of the events whose batch was acknowledged. */
  acked: Set<string>;
  tokens: bigint;
}

/** Batches acknowledged so far in the current run: faults are injected at a fraction of the load. */
const progress = { acked: 0, total: 0 };

/** Resolves once `fraction` of the run's batches have been acknowledged: the fault lands mid-load. */
async function atProgress(fraction: number): Promise<string> {
  const target = Math.max(1, Math.floor(progress.total * fraction));
  while (progress.acked < target) await sleep(5);
  return `after ${progress.acked} of ${progress.total} batches`;
}

interface Batch {
  n: number;
  events: { specversion: string; id: string; source: string; type: string; subject: string; time: string; data: { tokens: number } }[];
}

/** The run's events in batches of 250, with about 3 % re-sent in a later batch (duplicates). Starts the run's progress. */
function batches(run: string, seed: number, count: number): Batch[] {
  Object.assign(progress, { acked: 0, total: Math.ceil(count / 250) });
  const rnd = seededRandom(seed);
  const now = Date.now();
  const all = Array.from({ length: count }, (_, i) => ({
    specversion: '1.0',
    id: `${run}-${i}`,
    source: 'faults',
    type: 'fault',
    subject: run,
    // Late and out of order: up to two days back, in random order.
    time: new Date(now - Math.floor(rnd() * 2 * 86_400_000)).toISOString(),
    data: { tokens: 1 + Math.floor(rnd() * 9) },
  }));
  const out: Batch[] = [];
  for (let i = 0; i < all.length; i += 250) {
    const events = all.slice(i, i + 250);
    for (let d = 0; d < 8; d++) events.push(all[Math.floor(rnd() * Math.min(all.length, i + 250))]!);
    out.push({ n: out.length, events });
  }
  return out;
}

function tally(produced: Produced, b: Batch): void {
  progress.acked++;
  for (const e of b.events) {
    if (!produced.acked.has(e.id)) {
      produced.acked.add(e.id);
      produced.tokens += BigInt(e.data.tokens);
    }
  }
}

/** Straight onto NATS: even batches on a free-form subject (the router's), odd ones pre-partitioned. Retries until acknowledged. */
async function produceNats(env: Env, run: string, all: Batch[], workers = 2): Promise<Produced> {
  const produced: Produced = { acked: new Set(), tokens: 0n };
  const { js } = env.nats;
  const publish = async (subject: string, data: string, msgID: string) => {
    for (let attempt = 0; ; attempt++) {
      try {
        await js.publish(subject, data, { msgID, timeout: 5_000 });
        return;
      } catch (err) {
        if (attempt > 400) throw err;
        await sleep(250);
      }
    }
  };
  let next = 0;
  await Promise.all(
    Array.from({ length: workers }, async () => {
      while (next < all.length) {
        const b = all[next++]!;
        if (b.n % 2 === 0) {
          await publish(env.nats.eventSubject('faults'), JSON.stringify(b.events), `${run}:${b.n}`);
        } else {
          const parts = new Map<number, Batch['events']>();
          for (const e of b.events) {
            const p = partitionOf(e.source, e.id, PARTITIONS);
            parts.set(p, [...(parts.get(p) ?? []), e]);
          }
          await Promise.all([...parts].map(([p, evs]) => publish(env.nats.partitionSubject(p), JSON.stringify(evs), `${run}:${b.n}@${p}`)));
        }
        tally(produced, b);
      }
    }),
  );
  return produced;
}

/** Over HTTP to an ingest process, with an Idempotency-Key, retrying refused or failed requests. */
async function produceHttp(url: string, key: string, run: string, all: Batch[], workers = 2): Promise<Produced & { retries: number }> {
  const produced = { acked: new Set<string>(), tokens: 0n, retries: 0 };
  let next = 0;
  await Promise.all(
    Array.from({ length: workers }, async () => {
      while (next < all.length) {
        const b = all[next++]!;
        for (let attempt = 0; ; attempt++) {
          try {
            const r = await fetch(`${url}/api/v1/events`, {
              method: 'POST',
              headers: { authorization: `Bearer ${key}`, 'content-type': 'application/cloudevents-batch+json', 'idempotency-key': `${run}:${b.n}` },
              body: JSON.stringify(b.events),
              signal: AbortSignal.timeout(10_000),
            });
            await r.arrayBuffer();
            if (r.status === 202) break;
            if (r.status < 500 && r.status !== 429) throw new Error(`ingest refused a batch: ${r.status}`);
          } catch (err) {
            if (String(err).includes('refused a batch') || attempt > 400) throw err;
          }
          produced.retries++;
          await sleep(200);
        }
        tally(produced, b);
      }
    }),
  );
  return produced;
}

// ---- checking ----------------------------------------------------------------------------

/** Waits until every processor consumer has delivered and had acknowledged everything. */
async function settle(env: Env, timeoutMs = 180_000): Promise<void> {
  const names = [ROUTER_CONSUMER, ...Array.from({ length: PARTITIONS }, (_, i) => partitionConsumer(i))];
  const deadline = Date.now() + timeoutMs;
  let quiet = 0;
  let last = '';
  while (Date.now() < deadline) {
    try {
      let busy = 0;
      const states: string[] = [];
      for (const n of names) {
        const info = await env.nats.jsm.consumers.info(env.nats.topology.stream, n);
        busy += info.num_pending + info.num_ack_pending;
        if (info.num_pending + info.num_ack_pending > 0) states.push(`${n}: ${info.num_pending} pending, ${info.num_ack_pending} unacked`);
      }
      last = states.join('; ');
      quiet = busy === 0 ? quiet + 1 : 0;
      if (quiet >= 3) return;
    } catch (err) {
      last = String(err);
      quiet = 0;
    }
    await sleep(500);
  }
  const logs = env.processors.map((p) => `${p.label}: ${p.output.slice(-1500)}`).join('\n');
  throw new Error(`the processors did not catch up within ${timeoutMs / 1000} s (${last})\n${logs}`);
}

async function check(env: Env, run: string, seed: number, produced: Produced, note: string): Promise<RunResult> {
  await settle(env);
  const { ch, db } = env.api.store!;
  const rs = await ch.query({
    query: `SELECT id, count() AS n FROM ${db}.events_raw WHERE source = 'faults' AND subject = {run:String} GROUP BY id`,
    query_params: { run },
    format: 'JSONCompactEachRow',
  });
  const rows = await rs.json<[string, string]>();
  const stored = new Map(rows.map(([id, n]) => [id, Number(n)]));
  let lost = 0;
  for (const id of produced.acked) if (!stored.has(id)) lost++;
  let doubled = 0;
  for (const n of stored.values()) doubled += n - 1;
  const counted = [...stored.values()].reduce((a, b) => a + b, 0);
  const usage = async (meter: string) => {
    const r = await env.api.app!.inject({ method: 'GET', url: `/api/v1/meters/${meter}/query?subject=${encodeURIComponent(run)}`, headers: { authorization: `Bearer ${env.adminKey}` } });
    return (r.json() as { data: { value: string }[] }).data[0]?.value ?? '0';
  };
  const rollupsExact = (await usage('calls')) === String(stored.size) && (await usage('tokens')) === String(produced.tokens);
  return { seed, acked: produced.acked.size, counted, lost, doubled, rollupsExact, note };
}

async function runSafely(seed: number, fn: () => Promise<RunResult>): Promise<RunResult> {
  try {
    return await fn();
  } catch (err) {
    return { seed, acked: 0, counted: 0, lost: 0, doubled: 0, rollupsExact: false, note: '', error: String(err).slice(0, 6000) };
  }
}

/** A run passed: it finished, lost and doubled nothing, and every rollup equals the events. */
const passed = (r: RunResult): boolean => !r.error && r.lost === 0 && r.doubled === 0 && r.rollupsExact;

function report(r: RunResult, i: number): void {
  const ok = passed(r);
  say(`  run ${i + 1} (seed ${r.seed}): ${ok ? 'ok' : 'FAILED'}  acked ${r.acked}, counted ${r.counted}, lost ${r.lost}, doubled ${r.doubled}, rollups ${r.rollupsExact ? 'exact' : 'WRONG'}  ${r.note}${r.error ? `\n    ${r.error}` : ''}`);
}

// ---- scenarios ---------------------------------------------------------------------------

async function processorKills(): Promise<ScenarioResult> {
  const t0 = Date.now();
  const env = await environment({ processors: 3 });
  const runs: RunResult[] = [];
  try {
    for (let i = 0; i < RUNS; i++) {
      const seed = 1000 + i;
      const rnd = seededRandom(seed);
      const run = `kill-${seed}`;
      const r = await runSafely(seed, async () => {
        const victim = env.processors[Math.floor(rnd() * env.processors.length)]!;
        const at = 0.1 + rnd() * 0.8;
        const downFor = Math.floor(rnd() * 3000);
        let when = '';
        const load = batches(run, seed, EVENTS);
        const fault = (async () => {
          when = await atProgress(at);
          await victim.kill('SIGKILL');
          await sleep(downFor);
          await victim.start();
        })();
        const produced = await produceNats(env, run, load);
        await fault;
        return check(env, run, seed, produced, `SIGKILL ${victim.label} ${when}, restarted after ${downFor} ms`);
      });
      report(r, i);
      runs.push(r);
    }
  } finally {
    await env.stop();
  }
  return {
    name: 'processor',
    title: `${env.processors.length} processors sharing ${PARTITIONS} partitions, one killed with SIGKILL at a random moment and restarted`,
    runs,
    notes: ['Producers publish straight to NATS (half on a free-form subject through the router, half pre-partitioned), ~3 % duplicates, event times up to two days back in random order.'],
    seconds: (Date.now() - t0) / 1000,
  };
}

async function natsNodeKills(): Promise<ScenarioResult> {
  const t0 = Date.now();
  const env = await environment({ cluster: true, processors: 2 });
  const runs: RunResult[] = [];
  try {
    for (let i = 0; i < 2; i++) {
      const seed = 2000 + i;
      const run = `nats-${seed}`;
      const node = i; // first node 0, then node 1
      const r = await runSafely(seed, async () => {
        let when = '';
        const load = batches(run, seed, EVENTS);
        const fault = (async () => {
          when = await atProgress(0.3);
          await env.natsCluster!.kill(node);
          await sleep(3000);
          await env.natsCluster!.restart(node);
        })();
        const produced = await produceNats(env, run, load);
        await fault;
        return check(env, run, seed, produced, `node n${node + 1} SIGKILLed ${when}, restarted 3 s later`);
      });
      report(r, i);
      runs.push(r);
    }
  } finally {
    await env.stop();
  }
  return {
    name: 'nats',
    title: '3-node NATS cluster, streams and KV buckets R3; one node killed and restarted during load, then a different node',
    runs,
    notes: ['Two processors and the producers connect with all three URLs and fail over.'],
    seconds: (Date.now() - t0) / 1000,
  };
}

async function ingestRestarts(): Promise<ScenarioResult> {
  const t0 = Date.now();
  const env = await environment({ processors: 2 });
  const key = (await env.api.keys.create('faults ingest', ['ingest'])).key;
  const runs: RunResult[] = [];
  const ingest = await ingestProcess(env.env);
  try {
    for (let i = 0; i < 3; i++) {
      const seed = 3000 + i;
      const rnd = seededRandom(seed);
      const run = `ingest-${seed}`;
      const r = await runSafely(seed, async () => {
        const at = 0.1 + rnd() * 0.6;
        let when = '';
        const load = batches(run, seed, EVENTS);
        const fault = (async () => {
          when = await atProgress(at);
          await ingest.proc.kill('SIGKILL');
          await sleep(1000);
          // On the same port: the producers' URL does not change (as behind a load balancer).
          await ingest.proc.start();
        })();
        const produced = await produceHttp(ingest.url, key, run, load);
        await fault;
        return check(env, run, seed, produced, `ingest SIGKILLed ${when}, restarted 1 s later; producers retried ${produced.retries} requests`);
      });
      report(r, i);
      runs.push(r);
    }
  } finally {
    await ingest.proc.kill('SIGTERM');
    await env.stop();
  }
  return {
    name: 'ingest',
    title: 'HTTP ingest killed with SIGKILL during load and restarted; producers retry with their Idempotency-Key',
    runs,
    notes: ['A request in flight when ingest died may have been stored without its 202: the retry is stored once (JetStream message ids).'],
    seconds: (Date.now() - t0) / 1000,
  };
}

async function storeOutages(): Promise<ScenarioResult> {
  const t0 = Date.now();
  const env = await environment({ processors: 2 });
  const runs: RunResult[] = [];
  const notes: string[] = ['Processor memory is bounded by PROCESSOR_BUFFER_BYTES while the store is away: the stream holds the backlog.'];
  try {
    for (let i = 0; i < 3; i++) {
      const seed = 4000 + i;
      const run = `store-${seed}`;
      const mode = i === 0 ? 'frozen (SIGSTOP)' : 'killed (SIGKILL) and restarted';
      const r = await runSafely(seed, async () => {
        const before = Math.max(...env.processors.map((p) => p.rssMiB()));
        let peak = before;
        const sampler = setInterval(() => (peak = Math.max(peak, ...env.processors.map((p) => p.rssMiB()))), 200);
        const load = batches(run, seed, EVENTS * 2);
        const fault = (async () => {
          await atProgress(0.1 + seededRandom(seed)() * 0.6);
          if (i === 0) {
            env.store.signal('SIGSTOP');
            await sleep(8000);
            env.store.signal('SIGCONT');
          } else {
            await env.store.kill('SIGKILL');
            await sleep(8000);
            await env.store.start();
          }
        })();
        const produced = await produceNats(env, run, load);
        await fault;
        const result = await check(env, run, seed, produced, '');
        clearInterval(sampler);
        result.note = `store ${mode} for 8 s during load; processor RSS ${before.toFixed(0)} MiB before, peak ${peak.toFixed(0)} MiB`;
        return result;
      });
      report(r, i);
      runs.push(r);
    }
  } finally {
    env.store.signal('SIGCONT');
    await env.stop();
  }
  return { name: 'store', title: 'ClickHouse frozen, then killed (twice), for 8 s during load; processors hold the batch and retry the same insert, then catch up', runs, notes, seconds: (Date.now() - t0) / 1000 };
}

/**
 * The default deployment as a user runs it: `meterline start` (ingest, processor, API and
 * scheduler in one process, its own nats-server, ClickHouse embedded in-process) killed with
 * SIGKILL at random instants while producers send over HTTP and retry until 202, then restarted
 * on the same state folder. At the end the process is stopped and its ClickHouse is opened here:
 * every acknowledged event must be in `events_raw`, `event_keys` and `meter_values` exactly once,
 * and every rollup must equal the events.
 */
async function allInOneKills(): Promise<ScenarioResult> {
  const t0 = Date.now();
  const runs: RunResult[] = [];
  const kills = Math.max(10, Number(process.env.FAULTS_ALLINONE_KILLS ?? 10));
  for (let i = 0; i < Math.max(1, Math.floor(RUNS / 5)); i++) {
    const seed = 5000 + i;
    const rnd = seededRandom(seed);
    const run = `allinone-${seed}`;
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meterline-allinone-'));
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const proc = new RoleProcess('meterline start', ['start'], {
      METERLINE_STATE_DIR: path.join(dir, 'state'),
      PORT: String(port),
      EVENT_PARTITIONS: String(PARTITIONS),
      PROCESSOR_LEASE_TTL: '3s',
      PROCESSOR_ACK_WAIT: '6s',
      LOG_LEVEL: process.env.FAULTS_LOG_LEVEL ?? 'info',
    }, /Meterline is running/);
    proc.logFile = path.join(dir, 'meterline.log');
    const r = await runSafely(seed, async () => {
      await proc.start();
      const adminKey = fs.readFileSync(path.join(dir, 'state', 'admin-key'), 'utf8').trim();
      for (const meter of [
        { slug: 'calls', eventType: 'fault', aggregation: 'COUNT' },
        { slug: 'tokens', eventType: 'fault', aggregation: 'SUM', valueProperty: '$.tokens' },
      ]) {
        const res = await fetch(`${url}/api/v1/meters`, { method: 'POST', headers: { authorization: `Bearer ${adminKey}`, 'content-type': 'application/json' }, body: JSON.stringify(meter) });
        if (res.status !== 201) throw new Error(`create meter: ${res.status} ${await res.text()}`);
      }
      const load = batches(run, seed, EVENTS * 2);
      const points = Array.from({ length: kills }, () => 0.05 + rnd() * 0.9).sort((a, b) => a - b);
      const downs: number[] = [];
      const fault = (async () => {
        for (const at of points) {
          await atProgress(at);
          await sleep(Math.floor(rnd() * 400)); // a random instant: mid-insert, mid-ack, mid-publish
          await proc.kill('SIGKILL');
          const t = Date.now();
          await proc.start();
          downs.push(Date.now() - t);
        }
      })();
      fault.catch(() => undefined); // awaited below; a failed restart must not end the suite before it is reported
      const produced = await produceHttp(url, adminKey, run, load);
      await fault;
      const result = await checkAllInOne(proc, url, adminKey, path.join(dir, 'state'), run, produced);
      result.seed = seed;
      const log = fs.readFileSync(proc.logFile!, 'utf8');
      const repeated = log.split('repeated an insert cut off by a crash').length - 1;
      result.note = `${kills} SIGKILLs of \`meterline start\` at random instants, each restarted on the same state dir (restart ${Math.min(...downs)}–${Math.max(...downs)} ms); ${repeated} inserts cut off by a kill were repeated from the write ledger; producers retried ${produced.retries} requests; ${result.note}`;
      return result;
    });
    await proc.kill('SIGTERM');
    report(r, i);
    runs.push(r);
    if (passed(r)) fs.rmSync(dir, { recursive: true, force: true });
    else say(`  state kept for inspection: ${dir}`);
  }
  return {
    name: 'allinone',
    title: '`meterline start` (embedded NATS and ClickHouse in one process) killed with SIGKILL at random instants during HTTP load, restarted on the same state dir',
    runs,
    notes: ['Checked after a clean stop by opening the embedded ClickHouse: each acknowledged event once in events_raw, event_keys and meter_values, and the minute, hour and day rollups (through the usage API, which names the rollup it read) equal to the events.'],
    seconds: (Date.now() - t0) / 1000,
  };
}

/** Waits for `meterline start` to have processed everything, then stops it and checks every table. */
async function checkAllInOne(proc: RoleProcess, url: string, adminKey: string, stateDir: string, run: string, produced: Produced): Promise<RunResult> {
  const natsUrl = /NATS\s+(nats:\/\/[^\s]+)/.exec(proc.output.slice(proc.output.lastIndexOf('Meterline is running')))?.[1];
  if (!natsUrl) throw new Error('could not find the embedded NATS url in the output');
  const nats = await openNats(natsUrl, natsTopology(loadConfig({ EVENT_PARTITIONS: String(PARTITIONS), METERLINE_STATE_DIR: stateDir })), silentLogger(), 'faults-check');
  try {
    await settle({ nats, processors: [proc] } as unknown as Env);
  } finally {
    await nats.close();
  }
  const auth = { authorization: `Bearer ${adminKey}` };
  const day = 86_400_000;
  const base = Math.floor(Date.now() / day) * day;
  // From a day, an hour, a minute and a second boundary: the usage API answers from the day,
  // hour and minute rollups and from meter_values, and says which.
  const ranges = [base - 4 * day, base - 4 * day + 3_600_000, base - 4 * day + 60_000, base - 4 * day + 1_000].map((from) => ({ from, to: base + day }));
  const mismatches: string[] = [];
  const sources: string[] = [];
  const distinct = produced.acked.size;
  for (const { from, to } of ranges) {
    for (const [meter, want] of [['calls', String(distinct)], ['tokens', String(produced.tokens)]] as const) {
      const q = `from=${new Date(from).toISOString()}&to=${new Date(to).toISOString()}&subject=${encodeURIComponent(run)}`;
      const res = await fetch(`${url}/api/v1/meters/${meter}/query?${q}`, { headers: auth });
      const body = (await res.json()) as { source?: string; data: { value: string }[] };
      const got = body.data[0]?.value ?? '0';
      sources.push(body.source ?? '?');
      if (got !== want) mismatches.push(`${meter} from ${body.source}: ${got}, expected ${want}`);
    }
  }
  await proc.kill('SIGTERM');
  const store = await openStore({ dataDir: path.join(stateDir, 'clickhouse'), db: 'meterline' });
  try {
    const counts = async (sql: string) => {
      const rs = await store.ch.query({ query: sql, query_params: { run }, format: 'JSONCompactEachRow' });
      return new Map((await rs.json<[string, string]>()).map(([id, n]) => [id, Number(n)]));
    };
    const raw = await counts(`SELECT id, count() FROM meterline.events_raw WHERE source = 'faults' AND subject = {run:String} GROUP BY id`);
    const keys = await counts(`SELECT id, count() FROM meterline.event_keys WHERE source = 'faults' AND id LIKE concat({run:String}, '-%') GROUP BY id`);
    const values = await counts(`SELECT concat(meter_id, '/', id), count() FROM meterline.meter_values WHERE source = 'faults' AND subject = {run:String} GROUP BY meter_id, id`);
    let lost = 0;
    let doubled = 0;
    for (const id of produced.acked) {
      const n = raw.get(id) ?? 0;
      if (n === 0) lost++;
      if ((keys.get(id) ?? 0) !== 1) mismatches.push(`event_keys holds ${run}/${id} ${keys.get(id) ?? 0} times`);
    }
    for (const n of raw.values()) doubled += Math.max(0, n - 1);
    const perMeter = new Map<string, number>();
    for (const [k, n] of values) {
      const meter = k.split('/')[0]!;
      perMeter.set(meter, (perMeter.get(meter) ?? 0) + 1);
      if (n !== 1) mismatches.push(`meter_values holds ${k} ${n} times`);
    }
    for (const [meter, n] of perMeter) if (n !== raw.size) mismatches.push(`meter_values has ${n} events of meter ${meter}, events_raw ${raw.size}`);
    const counted = [...raw.values()].reduce((a, b) => a + b, 0);
    return { seed: 0, acked: produced.acked.size, counted, lost, doubled, rollupsExact: mismatches.length === 0, note: `rollups read from ${[...new Set(sources)].join(', ')}${mismatches.length ? `; MISMATCHES: ${mismatches.slice(0, 8).join('; ')}` : ''}` };
  } finally {
    await store.close();
  }
}

// ---- main --------------------------------------------------------------------------------

const scenarios: Record<string, () => Promise<ScenarioResult>> = { processor: processorKills, nats: natsNodeKills, ingest: ingestRestarts, store: storeOutages, allinone: allInOneKills };

function table(results: ScenarioResult[]): string {
  const lines = ['| scenario | runs | events acknowledged | events counted | lost | doubled | rollups exact | failed runs |', '|---|---:|---:|---:|---:|---:|---|---:|'];
  for (const s of results) {
    const sum = (f: (r: RunResult) => number) => s.runs.reduce((a, r) => a + f(r), 0);
    const failed = s.runs.filter((r) => !passed(r)).length;
    lines.push(`| ${s.name} | ${s.runs.length} | ${sum((r) => r.acked)} | ${sum((r) => r.counted)} | ${sum((r) => r.lost)} | ${sum((r) => r.doubled)} | ${s.runs.every((r) => r.rollupsExact) ? 'yes' : 'no'} | ${failed} |`);
  }
  return lines.join('\n');
}

async function main(): Promise<void> {
  const names = args.only ? args.only.split(',') : Object.keys(scenarios);
  for (const n of names) if (!scenarios[n]) throw new Error(`unknown scenario "${n}"; choose from ${Object.keys(scenarios).join(', ')}`);
  const results: ScenarioResult[] = [];
  const t0 = Date.now();
  for (const n of names) {
    say(`\n== ${n}`);
    results.push(await scenarios[n]!());
    const s = results[results.length - 1]!;
    say(`  ${s.title} (${s.seconds.toFixed(0)} s)`);
  }
  const md = [
    `# Fault injection (${new Date().toISOString().slice(0, 10)})`,
    '',
    `\`npm run test:faults${process.argv.slice(2).length ? ` -- ${process.argv.slice(2).join(' ')}` : ''}\` on ${os.cpus().length} cores, ${Math.round(os.totalmem() / 2 ** 30)} GiB, Node ${process.version}; ${EVENTS} events per run (x2 in the store scenario), ${PARTITIONS} partitions, lease TTL 3 s, ack wait 6 s; ${((Date.now() - t0) / 1000).toFixed(0)} s in all.`,
    '',
    table(results),
    '',
    ...results.flatMap((s) => [`## ${s.name}: ${s.title}`, '', ...s.notes, '', '| seed | acknowledged | counted | lost | doubled | rollups | what happened |', '|---:|---:|---:|---:|---:|---|---|', ...s.runs.map((r) => `| ${r.seed} | ${r.acked} | ${r.counted} | ${r.lost} | ${r.doubled} | ${r.rollupsExact ? 'exact' : 'WRONG'} | ${r.error ? `error: ${r.error.replaceAll('|', '/').replaceAll('\n', ' ')}` : r.note} |`), '']),
  ].join('\n');
  process.stdout.write('\n' + table(results) + '\n');
  if (args.out) {
    fs.writeFileSync(args.out, md + '\n');
    fs.writeFileSync(args.out.replace(/\.md$/, '') + '.json', JSON.stringify(results, null, 2) + '\n');
    say(`wrote ${args.out}`);
  }
  const bad = results.flatMap((s) => s.runs).filter((r) => !passed(r));
  if (bad.length > 0) {
    say(`\n${bad.length} run(s) failed`);
    process.exit(1);
  }
  process.exit(0);
}

main().catch((err: unknown) => {
  say(`fault suite could not run: ${String(err instanceof Error ? (err.stack ?? err.message) : err)}`);
  process.exit(1);
});
