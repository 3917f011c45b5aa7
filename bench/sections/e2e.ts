import { performance } from 'node:perf_hooks';
import { BATCH, type Bench, type Section } from '../harness.ts';
import { round, summarize } from '../lib.ts';

type InsertStats = { inserts: number; rows: number; seconds: number };

/** The processor's inserts so far (from `/metrics`): how many, rows and seconds in all. */
async function insertStats(b: Bench): Promise<InsertStats> {
  const text = await (await fetch(`${b.url}/metrics`, { headers: b.auth })).text();
  const metric = (name: string) => Number(/^(\S+) (\S+)$/m.exec(text.split('\n').filter((l) => l.startsWith(`${name} `)).join('\n'))?.[2] ?? 0);
  return { inserts: metric('meterline_processor_insert_latency_seconds_count'), rows: metric('meterline_processor_insert_rows_total'), seconds: metric('meterline_processor_insert_latency_seconds_sum') };
}
/** What the processor's inserts did between two `insertStats()`: their number, average rows and milliseconds. */
function insertsBetween(a: InsertStats, b: InsertStats) {
  const n = b.inserts - a.inserts;
  return { inserts: n, averageRows: n > 0 ? Math.round((b.rows - a.rows) / n) : 0, averageMs: n > 0 ? round(((b.seconds - a.seconds) / n) * 1000, 1) : 0 };
}

/** End to end over HTTP: batches of 1,000, 8 in flight, until the totals are exact. */
export const e2eHttp: Section = {
  name: 'e2eHttp',
  summary: 'events end to end over HTTP (batches of 1,000, 8 in flight) until the totals are exact',
  timeoutMs: 300_000,
  sendsEvents: true,
  async run(b, signal) {
    b.running();
    b.log(`end to end over HTTP: ${b.size.e2e} events`);
    const gen = b.newGen(1);
    const before = await insertStats(b);
    const t0 = performance.now();
    const lat = await b.sendHttp(b.url, gen, b.size.e2e, 8, signal);
    const sendSeconds = (performance.now() - t0) / 1000;
    await b.waitTotals('e2e http');
    const seconds = (performance.now() - t0) / 1000;
    b.results.e2eHttp = { events: b.size.e2e, unique: gen.expected.unique, seconds: round(seconds), eventsPerSecond: Math.round(b.size.e2e / seconds), ingestAcceptedPerSecond: Math.round(b.size.e2e / sendSeconds), batch: BATCH, requestLatencyMs: summarize(lat), totalsExact: true, processorInserts: insertsBetween(before, await insertStats(b)) };
    b.log(`  ${JSON.stringify(b.results.e2eHttp)}`);
  },
};

/** End to end over NATS, a producer publishing on the partitions' subjects. */
export const e2eNats: Section = {
  name: 'e2eNats',
  summary: "events end to end over NATS, published on the partitions' subjects (meterline.partition.<n>)",
  timeoutMs: 300_000,
  sendsEvents: true,
  async run(b, signal) {
    b.running();
    b.log(`end to end over NATS: ${b.size.e2e} events`);
    const gen = b.newGen(2);
    const before = await insertStats(b);
    const t0 = performance.now();
    await b.publishNats(gen, b.size.e2e, signal, true);
    await b.waitTotals('e2e nats');
    const seconds = (performance.now() - t0) / 1000;
    b.results.e2eNats = { events: b.size.e2e, seconds: round(seconds), eventsPerSecond: Math.round(b.size.e2e / seconds), totalsExact: true, subjects: 'meterline.partition.<n>', processorInserts: insertsBetween(before, await insertStats(b)) };
    b.log(`  ${JSON.stringify(b.results.e2eNats)}`);
  },
};

/** End to end over NATS on a free-form subject, which the processor's router moves onto the partitions. */
export const e2eNatsRouted: Section = {
  name: 'e2eNatsRouted',
  summary: "events end to end over NATS on a free-form subject, moved onto the partitions by the processor's router",
  timeoutMs: 300_000,
  sendsEvents: true,
  async run(b, signal) {
    b.running();
    b.log(`end to end over NATS, free-form subject through the router: ${b.size.e2e} events`);
    const gen = b.newGen(3);
    const t0 = performance.now();
    await b.publishNats(gen, b.size.e2e, signal, false);
    await b.waitTotals('e2e nats routed');
    const seconds = (performance.now() - t0) / 1000;
    b.results.e2eNatsRouted = { events: b.size.e2e, seconds: round(seconds), eventsPerSecond: Math.round(b.size.e2e / seconds), totalsExact: true, subjects: 'meterline.events.bench' };
    b.log(`  ${JSON.stringify(b.results.e2eNatsRouted)}`);
  },
};
