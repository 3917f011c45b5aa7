/**
 * Meterline's benchmarks. `npm run bench` (full) or `npm run bench:quick` (under 2 minutes).
 * Writes bench/results/bench-<full|quick>.json and .md with the machine and versions.
 *
 * Every throughput figure ends with an exact check of the totals against the generator's
 * expected values: a run with wrong totals is a failed run, not a fast one.
 *
 * Topology: a nats-server spawned here; `meterline start` (ingest, processor, API, scheduler in
 * one process, embedded ClickHouse) as a child process; the load generator in this process.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { connect } from '@nats-io/transport-node';
import { jetstream } from '@nats-io/jetstream';
import { parse as losslessParse } from 'lossless-json';
import { startNatsServer, freePort } from '../common/nats-server.ts';
import { checkEvent } from '../ingest/index.ts';
import { DedupIndex, meterValues, type Meter } from '../processor/index.ts';
import { BENCH_METERS, LoadGenerator } from './load.ts';
import { machine, peakRssMiB, ROOT, round, sleep, spawnNode, summarize, waitFor, type Child } from './lib.ts';

const quick = process.argv.includes('--quick');
const SIZE = quick
  ? { e2e: 150_000, replay: 150_000, ceiling: 150_000, decode: 150_000, latencySeconds: 6, freshness: 40, queryRows: [1_000_000, 5_000_000], closeSubs: 200, dedupKeys: 1_000_000 }
  : { e2e: 1_000_000, replay: 1_000_000, ceiling: 1_000_000, decode: 1_000_000, latencySeconds: 20, freshness: 200, queryRows: [10_000_000, 100_000_000], closeSubs: 10_000, dedupKeys: 5_000_000 };
const BATCH = 1_000;
const log = (s: string) => process.stderr.write(`bench: ${s}\n`);

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'meterline-bench-'));
const nats = await startNatsServer({ storeDir: path.join(tmp, 'nats') });
const port = await freePort();
const url = `http://127.0.0.1:${port}`;
const env = { NATS_URL: nats.url, METERLINE_STATE_DIR: path.join(tmp, 'state'), PORT: String(port), LOG_LEVEL: 'warn', INGEST_MAX_INFLIGHT: '1024', BILLING_SCHEDULE: '0 0 1 1 *', ANOMALY_SCHEDULE: '0 0 1 1 *' };
let child: Child = spawnNode('cli/main.ts', ['start'], env);
const ready = () => waitFor(async () => (await fetch(`${url}/readyz`)).status, (s) => s === 200, 60_000);
await ready();
const key = fs.readFileSync(path.join(tmp, 'state', 'admin-key'), 'utf8').trim();
const auth = { authorization: `Bearer ${key}` };
const api = async <T>(p: string, init: RequestInit = {}): Promise<T> => {
  const r = await fetch(`${url}${p}`, { ...init, headers: { ...auth, 'content-type': 'application/json', ...(init.headers as Record<string, string>) } });
  if (!r.ok) throw new Error(`${p}: ${r.status} ${await r.text()}`);
  return (await r.json()) as T;
};
for (const m of [...BENCH_METERS, { slug: 'fresh', eventType: 'fresh.ping', aggregation: 'COUNT' }]) await api('/api/v1/meters', { method: 'POST', body: JSON.stringify(m) });

const results: Record<string, unknown> = { mode: quick ? 'quick' : 'full', startedAt: new Date().toISOString(), machine: machine() };

/**
 * Totals of the four meters over whole UTC days around now (so the day rollups answer: cheap to
 * poll while the processor works); per-customer unique users summed, as the generator counts them.
 */
const DAY = 86_400_000;
const range = () => `from=${new Date(Math.floor((Date.now() - 5 * DAY) / DAY) * DAY).toISOString()}&to=${new Date(Math.ceil((Date.now() + DAY) / DAY) * DAY).toISOString()}`;
async function totals() {
  const one = async (slug: string) => (await api<{ data: { value: string }[] }>(`/api/v1/meters/${slug}/query?${range()}`)).data[0]?.value ?? '0';
  const users = await api<{ data: { value: string }[] }>(`/api/v1/meters/users/query?groupBy=subject&${range()}`);
  return { calls: await one('calls'), tokens: await one('tokens'), bytes: await one('bytes'), users: String(users.data.reduce((a, d) => a + Number(d.value), 0)) };
}
const calls = async () => (await api<{ data: { value: string }[] }>(`/api/v1/meters/calls/query?${range()}`)).data[0]?.value ?? '0';
const expectedOf = (g: LoadGenerator[]) => {
  const calls = g.reduce((a, x) => a + x.expected.calls, 0);
  const tokens = g.reduce((a, x) => a.plus(x.expected.tokens), g[0]!.expected.tokens.mul(0));
  const bytes = g.reduce((a, x) => a.plus(x.expected.bytes), g[0]!.expected.bytes.mul(0));
  const users = new Set(g.flatMap((x) => [...x.expected.users])).size;
  return { calls: String(calls), tokens: tokens.toFixed(), bytes: bytes.toFixed(), users: String(users) };
};
const gens: LoadGenerator[] = [];

/** Sends `n` events over HTTP with `inflight` concurrent batch requests; returns per-request latencies (ms). */
async function sendHttp(gen: LoadGenerator, n: number, inflight: number, paceEventsPerSec?: number): Promise<number[]> {
  const lat: number[] = [];
  let sent = 0;
  const start = performance.now();
  const worker = async () => {
    while (sent < n) {
      const size = Math.min(BATCH, n - sent);
      sent += size;
      if (paceEventsPerSec) {
        const due = start + (sent / paceEventsPerSec) * 1000;
        const wait = due - performance.now();
        if (wait > 0) await sleep(wait);
      }
      const body = JSON.stringify(gen.batch(size));
      for (;;) {
        const t = performance.now();
        const r = await fetch(`${url}/api/v1/events`, { method: 'POST', headers: { ...auth, 'content-type': 'application/cloudevents-batch+json' }, body });
        await r.arrayBuffer();
        if (r.status === 202) {
          lat.push(performance.now() - t);
          break;
        }
        if (r.status !== 429 && r.status !== 503) throw new Error(`ingest answered ${r.status}`);
        await sleep(50);
      }
    }
  };
  await Promise.all(Array.from({ length: inflight }, worker));
  return lat;
}

async function waitTotals(label: string, timeoutMs = 600_000) {
  const want = expectedOf(gens);
  // Poll one cheap total until the processor has caught up, then check every total exactly.
  await waitFor(calls, (v) => v === want.calls, timeoutMs, 250).catch(() => undefined);
  const got = await waitFor(totals, (t) => t.calls === want.calls && t.tokens === want.tokens && t.bytes === want.bytes && t.users === want.users, timeoutMs, 200).catch(async (err: unknown) => {
    const t = await totals();
    throw new Error(`${label}: totals wrong or late: got ${JSON.stringify(t)}, want ${JSON.stringify(want)} (${String(err)})`);
  });
  return got;
}

// ---- 1. end to end over HTTP ---------------------------------------------------------------
{
  log(`end to end over HTTP: ${SIZE.e2e} events`);
  const gen = new LoadGenerator({ seed: 1, customers: 10_000, duplicateRate: 0.03, lateRate: 0.01, nowMs: Date.now() });
  gens.push(gen);
  const t0 = performance.now();
  const lat = await sendHttp(gen, SIZE.e2e, 8);
  const sendSeconds = (performance.now() - t0) / 1000;
  await waitTotals('e2e http');
  const seconds = (performance.now() - t0) / 1000;
  results.e2eHttp = { events: SIZE.e2e, unique: gen.expected.unique, seconds: round(seconds), eventsPerSecond: Math.round(SIZE.e2e / seconds), ingestAcceptedPerSecond: Math.round(SIZE.e2e / sendSeconds), batch: BATCH, requestLatencyMs: summarize(lat), totalsExact: true };
  log(`  ${JSON.stringify(results.e2eHttp)}`);
}

// ---- 2. end to end over NATS -----------------------------------------------------------------
const nc = await connect({ servers: nats.url });
const js = jetstream(nc);
async function publishNats(gen: LoadGenerator, n: number) {
  const pending: Promise<unknown>[] = [];
  for (let sent = 0; sent < n; sent += BATCH) {
    pending.push(js.publish('meterline.events.bench', JSON.stringify(gen.batch(Math.min(BATCH, n - sent))), { msgID: `bench-${gen.opts.seed}-${sent}` }));
    if (pending.length >= 64) await pending.shift();
  }
  await Promise.all(pending);
}
{
  log(`end to end over NATS: ${SIZE.e2e} events`);
  const gen = new LoadGenerator({ seed: 2, customers: 10_000, duplicateRate: 0.03, lateRate: 0.01, nowMs: Date.now() });
  gens.push(gen);
  const t0 = performance.now();
  await publishNats(gen, SIZE.e2e);
  await waitTotals('e2e nats');
  const seconds = (performance.now() - t0) / 1000;
  results.e2eNats = { events: SIZE.e2e, seconds: round(seconds), eventsPerSecond: Math.round(SIZE.e2e / seconds), totalsExact: true };
  log(`  ${JSON.stringify(results.e2eNats)}`);
}

// ---- 3. ingest latency at 50 % and 90 % of the maximum accepted rate -------------------------
{
  const maxRate = (results.e2eHttp as { ingestAcceptedPerSecond: number }).ingestAcceptedPerSecond;
  const lat: Record<string, unknown> = { maxAcceptedEventsPerSecond: maxRate, batch: 100 };
  for (const share of [0.5, 0.9]) {
    const rate = Math.round(maxRate * share);
    log(`ingest latency at ${share * 100}% (${rate} events/s, batches of 100)`);
    const gen = new LoadGenerator({ seed: 3 + share, customers: 10_000, duplicateRate: 0.03, lateRate: 0.01, nowMs: Date.now() });
    gens.push(gen);
    const n = rate * SIZE.latencySeconds;
    const samples: number[] = [];
    let sent = 0;
    const start = performance.now();
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        while (sent < n) {
          const size = Math.min(100, n - sent);
          sent += size;
          const wait = start + (sent / rate) * 1000 - performance.now();
          if (wait > 0) await sleep(wait);
          const t = performance.now();
          const r = await fetch(`${url}/api/v1/events`, { method: 'POST', headers: { ...auth, 'content-type': 'application/cloudevents-batch+json' }, body: JSON.stringify(gen.batch(size)) });
          await r.arrayBuffer();
          if (r.status !== 202) throw new Error(`ingest answered ${r.status}`);
          samples.push(performance.now() - t);
        }
      }),
    );
    lat[`at${share * 100}pct`] = { targetEventsPerSecond: rate, achievedEventsPerSecond: Math.round(n / ((performance.now() - start) / 1000)), latencyMs: summarize(samples) };
  }
  await waitTotals('latency runs');
  results.ingestLatency = lat;
  log(`  ${JSON.stringify(lat)}`);
}

// ---- 4. freshness: from sending an event to seeing it in the usage API -----------------------
{
  log(`freshness: ${SIZE.freshness} events`);
  const sentAt = new Map<string, number>();
  const seen = new Map<string, number>();
  const from = new Date(Date.now() - 60_000).toISOString();
  let polling = true;
  const poller = (async () => {
    while (polling) {
      const r = await api<{ data: { subject: string }[] }>(`/api/v1/meters/fresh/query?groupBy=subject&from=${from}`);
      const t = performance.now();
      for (const d of r.data) if (!seen.has(d.subject)) seen.set(d.subject, t);
      await sleep(20);
    }
  })();
  for (let i = 0; i < SIZE.freshness; i++) {
    const subject = `fresh-${i}`;
    sentAt.set(subject, performance.now());
    await api('/api/v1/events', { method: 'POST', body: JSON.stringify({ specversion: '1.0', id: `f-${i}`, source: 'bench', type: 'fresh.ping', subject }) });
    await sleep(50);
  }
  await waitFor(async () => seen.size, (n) => n === SIZE.freshness, 60_000);
  polling = false;
  await poller;
  results.freshness = { events: SIZE.freshness, pollIntervalMs: 20, ms: summarize([...sentAt].map(([s, t]) => seen.get(s)! - t)) };
  log(`  ${JSON.stringify(results.freshness)}`);
}

// ---- 5. processor replay: catching up on a stream that is already full -----------------------
{
  log(`replay: ${SIZE.replay} events published while the processor is down`);
  results.rssMiB = { meterlineStartBeforeReplay: peakRssMiB(child.proc.pid!) };
  await child.stop();
  const gen = new LoadGenerator({ seed: 9, customers: 10_000, duplicateRate: 0.03, lateRate: 0.01, nowMs: Date.now() });
  gens.push(gen);
  await publishNats(gen, SIZE.replay);
  const t0 = performance.now();
  child = spawnNode('cli/main.ts', ['start'], env);
  await ready();
  await waitTotals('replay');
  const seconds = (performance.now() - t0) / 1000;
  results.replay = { events: SIZE.replay, seconds: round(seconds), eventsPerSecond: Math.round(SIZE.replay / seconds), includesStartSeconds: true, totalsExact: true };
  (results.rssMiB as Record<string, number>).meterlineStartAfterReplay = peakRssMiB(child.proc.pid!);
  log(`  ${JSON.stringify(results.replay)}`);
}

// ---- 6. billing close --------------------------------------------------------------------------
{
  log(`billing close: ${SIZE.closeSubs} subscriptions`);
  const now = new Date();
  const monthStart = Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - 1, 1);
  const month = new Date(monthStart).toISOString().slice(0, 7);
  await api('/api/v1/plans', {
    method: 'POST',
    body: JSON.stringify({ key: 'bench', name: 'Bench', currency: 'USD', interval: 'month', baseFee: { amount: '10', timing: 'arrears' }, charges: [{ key: 'calls', meter: 'calls', price: { model: 'graduated', tiers: [{ upTo: '100', unitPrice: '0.01' }, { upTo: null, unitPrice: '0.005' }] } }, { key: 'tokens', meter: 'tokens', price: { model: 'per_unit', unitPrice: '0.00001' } }] }),
  });
  const t0 = performance.now();
  for (let i = 0; i < SIZE.closeSubs; i += 20) {
    await Promise.all(
      Array.from({ length: Math.min(20, SIZE.closeSubs - i) }, async (_, j) => {
        const k = i + j;
        await api('/api/v1/customers', { method: 'POST', body: JSON.stringify({ key: `cust-${k}`, name: `Customer ${k}`, currency: 'USD' }) });
        await api('/api/v1/subscriptions', { method: 'POST', body: JSON.stringify({ id: `bench-${k}`, customer: `cust-${k}`, plan: 'bench', start: new Date(monthStart).toISOString() }) });
      }),
    );
  }
  const setupSeconds = (performance.now() - t0) / 1000;
  const t1 = performance.now();
  const r = await api<{ invoices: unknown[]; skipped: unknown[] }>('/api/v1/billing/close', { method: 'POST', body: JSON.stringify({ period: month }) });
  const seconds = (performance.now() - t1) / 1000;
  results.close = { subscriptions: SIZE.closeSubs, invoices: r.invoices.length, skipped: r.skipped.length, seconds: round(seconds), subscriptionsPerSecond: round(SIZE.closeSubs / seconds, 1), setupSeconds: round(setupSeconds, 1) };
  log(`  ${JSON.stringify(results.close)}`);
}
(results.rssMiB as Record<string, number>).meterlineStartPeak = peakRssMiB(child.proc.pid!);
await child.stop();
await nc.close();
await nats.stop();

// ---- 7. the ceiling: straight inserts, and the bare decode-and-validate loop ------------------
{
  log(`ceiling: ${SIZE.ceiling} rows straight into ClickHouse; usage queries at ${SIZE.queryRows.join(', ')} stored events`);
  const c = spawnNode('bench/ceiling.ts', [path.join(tmp, 'ceiling-ch'), String(SIZE.ceiling), SIZE.queryRows.join(',')], {});
  await new Promise((r) => c.proc.once('exit', r));
  if (c.proc.exitCode !== 0) throw new Error(`ceiling failed:\n${c.output()}`);
  const out = JSON.parse(c.output().trim().split('\n').filter((l) => l.startsWith('{')).at(-1)!) as { insertRowsPerSecond: number; queries: unknown };
  results.ceilingInsert = { rows: SIZE.ceiling, rowsPerSecond: out.insertRowsPerSecond };
  results.usageQueries = out.queries;
  (results.rssMiB as Record<string, number>).ceilingProcessPeak = peakRssMiB(c.proc.pid!);

  const gen = new LoadGenerator({ seed: 42, customers: 10_000, duplicateRate: 0, lateRate: 0.01, nowMs: Date.now() });
  const bodies = Array.from({ length: SIZE.decode / BATCH }, () => JSON.stringify(gen.batch(BATCH)));
  const meters = BENCH_METERS.map((m, i) => ({ ...m, id: `m${i}`, createdAt: '' }) as unknown as Meter);
  const limits = { maxFutureMs: 600_000, maxPastMs: 60 * 86_400_000 };
  const t0 = performance.now();
  let ok = 0;
  for (const b of bodies) {
    for (const item of losslessParse(b) as unknown[]) {
      const r = checkEvent(item, Date.now(), limits);
      if (r.ok && meterValues(r.event, meters).ok) ok++;
    }
  }
  const s = (performance.now() - t0) / 1000;
  if (ok !== SIZE.decode) throw new Error(`decode loop accepted ${ok} of ${SIZE.decode}`);
  results.ceilingDecode = { events: SIZE.decode, eventsPerSecond: Math.round(SIZE.decode / s) };
  log(`  insert ${out.insertRowsPerSecond} rows/s; decode ${(results.ceilingDecode as { eventsPerSecond: number }).eventsPerSecond} events/s`);
}

// ---- 8. dedup index memory ----------------------------------------------------------------------
{
  global.gc?.();
  const before = process.memoryUsage().heapUsed;
  const idx = new DedupIndex(86_400_000, SIZE.dedupKeys + 1);
  const now = Date.now();
  const keys: string[] = [];
  for (let i = 0; i < SIZE.dedupKeys; i++) {
    keys.push(`12:gateway-prod\u0000evt_${(i * 2654435761) % 4294967296}_${i}`);
    if (keys.length === 10_000) {
      idx.add(keys, now);
      keys.length = 0;
    }
  }
  idx.add(keys, now);
  global.gc?.();
  const bytes = process.memoryUsage().heapUsed - before;
  results.dedupMemory = { keys: idx.size, keyExample: '12:gateway-prod\\u0000evt_<10 digits>_<n> (~35 characters)', bytesPerKey: Math.round(bytes / idx.size), mibPerMillionKeys: round(bytes / idx.size / 1.048576, 1) };
  log(`  dedup: ${JSON.stringify(results.dedupMemory)}`);
}

// ---- report ---------------------------------------------------------------------------------------
const e2eH = results.e2eHttp as { eventsPerSecond: number };
const e2eN = results.e2eNats as { eventsPerSecond: number };
const ceil = results.ceilingInsert as { rowsPerSecond: number };
results.fractionOfInsertCeiling = { http: round(e2eH.eventsPerSecond / ceil.rowsPerSecond, 3), nats: round(e2eN.eventsPerSecond / ceil.rowsPerSecond, 3) };
results.finishedAt = new Date().toISOString();
const outDir = path.join(ROOT, 'bench', 'results');
fs.mkdirSync(outDir, { recursive: true });
const name = `bench-${quick ? 'quick' : 'full'}`;
fs.writeFileSync(path.join(outDir, `${name}.json`), JSON.stringify(results, null, 2) + '\n');
fs.writeFileSync(path.join(outDir, `${name}.md`), markdown(results));
process.stdout.write(markdown(results));
fs.rmSync(tmp, { recursive: true, force: true });

function markdown(r: Record<string, unknown>): string {
  const m = r.machine as ReturnType<typeof machine>;
  const q = r.usageQueries as Record<string, { rows: number; p50Ms: number; p99Ms: number; fillSeconds: number }>;
  const l = r.ingestLatency as Record<string, { targetEventsPerSecond: number; latencyMs: { p50: number; p99: number } }>;
  const lines = [
    `# Meterline benchmark (${r.mode})`,
    '',
    `${r.startedAt} · ${m.cpus} cores (${m.cpuModel}), ${m.memoryGiB} GiB · Node ${m.node} · ${m.nats} · chDB ${m.chdb} (ClickHouse embedded)`,
    '',
    '| figure | value | target |',
    '|---|---|---|',
    `| end to end, HTTP (exact totals) | ${(r.e2eHttp as { eventsPerSecond: number }).eventsPerSecond.toLocaleString('en-US')} events/s | ≥ 100,000 |`,
    `| end to end, NATS (exact totals) | ${(r.e2eNats as { eventsPerSecond: number }).eventsPerSecond.toLocaleString('en-US')} events/s | ≥ 100,000 |`,
    `| insert ceiling (same rows straight into ClickHouse) | ${(r.ceilingInsert as { rowsPerSecond: number }).rowsPerSecond.toLocaleString('en-US')} rows/s | |`,
    `| end to end as a fraction of the insert ceiling | HTTP ${(r.fractionOfInsertCeiling as { http: number }).http}, NATS ${(r.fractionOfInsertCeiling as { nats: number }).nats} | ≥ 0.5 |`,
    `| decode + validate + meter values (one core) | ${(r.ceilingDecode as { eventsPerSecond: number }).eventsPerSecond.toLocaleString('en-US')} events/s | |`,
    ...Object.entries(l)
      .filter(([k]) => k.startsWith('at'))
      .map(([k, v]) => `| ingest latency at ${k.slice(2, -3)} % of max (${v.targetEventsPerSecond.toLocaleString('en-US')} events/s, batches of 100) | p50 ${v.latencyMs.p50} ms, p99 ${v.latencyMs.p99} ms | p99 < 50 ms at 50 % |`),
    `| freshness (send → visible in the usage API) | p50 ${(r.freshness as { ms: { p50: number } }).ms.p50} ms, p99 ${(r.freshness as { ms: { p99: number } }).ms.p99} ms | p99 < 2 s |`,
    `| processor replay of a full stream (incl. process start) | ${(r.replay as { eventsPerSecond: number }).eventsPerSecond.toLocaleString('en-US')} events/s | |`,
    ...Object.values(q).map((v) => `| usage query, a customer's month by hour, ${v.rows.toLocaleString('en-US')} stored events | p50 ${v.p50Ms} ms, p99 ${v.p99Ms} ms | p99 < 50 ms, flat |`),
    `| billing close | ${(r.close as { subscriptions: number }).subscriptions.toLocaleString('en-US')} subscriptions in ${(r.close as { seconds: number }).seconds} s (${(r.close as { subscriptionsPerSecond: number }).subscriptionsPerSecond}/s) | 100,000 in < 60 s |`,
    `| dedup index memory | ${(r.dedupMemory as { mibPerMillionKeys: number }).mibPerMillionKeys} MiB per million keys | 24 h at 10k/s (864 M keys) within 1.5 GiB |`,
    `| peak RSS, meterline start (all roles) | ${(r.rssMiB as { meterlineStartPeak: number }).meterlineStartPeak} MiB | |`,
    '',
    'Raw figures: the JSON file beside this one. Reproduce: `npm run bench' + (r.mode === 'quick' ? ':quick' : '') + '`.',
    '',
  ];
  return lines.join('\n');
}
