import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { jetstreamManager } from '@nats-io/jetstream';
import { freePort } from '../../common/nats-server.ts';
import type { Bench, Section } from '../harness.ts';
import { peakRssMiB, round, sleep, spawnNode, summarize } from '../lib.ts';

/** Messages JetStream has redelivered so far, over every consumer of the events stream (a batch not acked within the ack wait comes back). */
async function redelivered(b: Bench): Promise<number> {
  if (!b.nc) return NaN;
  const jsm = await jetstreamManager(b.nc);
  let sum = 0;
  for await (const c of jsm.consumers.list('EVENTS')) sum += c.num_redelivered;
  return sum;
}

/**
 * Latency of batches of 100 sent at `share` of `maxRate` for `size.latencySeconds`, 16 requests
 * at most in flight. The bodies are generated before the clock starts, so the generator's own
 * work does not compete with the process measured.
 */
async function latencyAt(b: Bench, base: string, maxRate: number, share: number, seed: number, signal: AbortSignal) {
  const rate = Math.round(maxRate * share);
  const gen = b.newGen(seed);
  const count = rate * b.size.latencySeconds;
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
        const r = await fetch(`${base}/api/v1/events`, { method: 'POST', headers: { ...b.auth, 'content-type': 'application/cloudevents-batch+json' }, body: bodies[i] });
        await r.arrayBuffer();
        if (r.status !== 202) throw new Error(`ingest answered ${r.status}`);
        samples.push(performance.now() - t);
      }
    }),
  );
  return { targetEventsPerSecond: rate, achievedEventsPerSecond: Math.round(count / ((performance.now() - start) / 1000)), latencyMs: summarize(samples) };
}

/**
 * Ingest latency at 50 % and 90 % of its own maximum rate, against a separate `meterline ingest`
 * (run before the all-in-one latency runs: after those, a separate ingest's first events took ~40 s
 * to be stored on 2 cores; see warmUpStoredAfterSeconds and probeCatchUpSeconds in the results).
 */
export const ingestLatencySeparate: Section = {
  name: 'ingestLatencySeparate',
  summary: 'a separate `meterline ingest`: its maximum accepted rate, latency at 50 % and 90 % of the end-to-end rate, peak RSS',
  timeoutMs: 300_000,
  sendsEvents: true,
  async run(b, signal) {
    b.running();
    const port = await freePort();
    const ingestUrl = `http://127.0.0.1:${port}`;
    const ingest = spawnNode('cli/main.ts', ['ingest'], { ...b.env, PORT: String(port), METERLINE_STATE_DIR: path.join(b.tmp, 'ingest-state') });
    try {
      await b.readyAt(ingestUrl).catch((err: unknown) => {
        throw new Error(`meterline ingest did not become ready: ${String(err)}\n${ingest.output().slice(-2_000)}`);
      });
      // A warm-up of a quarter of the probe, untimed, until the processor has stored it: a running
      // processor can stall for a while after another role starts (probeCatchUp below says how long).
      b.log(`separate ingest: warm-up of ${Math.round(b.size.ingestProbe / 4)} events`);
      const redeliveredBefore = await redelivered(b);
      const tw = performance.now();
      await b.sendHttp(ingestUrl, b.newGen(4), Math.round(b.size.ingestProbe / 4), 8, signal);
      await b.waitTotals('separate ingest warm-up');
      const warmUpSeconds = round((performance.now() - tw) / 1000, 1);
      b.log(`  warm-up stored after ${warmUpSeconds} s`);
      // Its own maximum accepted rate (batches of 1,000, 8 in flight), the processor of
      // `meterline start` consuming meanwhile on the same cores.
      b.log(`separate ingest: maximum accepted rate over ${b.size.ingestProbe} events`);
      const t0 = performance.now();
      await b.sendHttp(ingestUrl, b.newGen(5), b.size.ingestProbe, 8, signal);
      const probeSeconds = (performance.now() - t0) / 1000;
      const maxRate = Math.round(b.size.ingestProbe / probeSeconds);
      await b.waitTotals('separate ingest probe');
      const probeCatchUpSeconds = round((performance.now() - t0) / 1000 - probeSeconds, 1);
      b.log(`  ${maxRate} events/s accepted; the processor caught up ${probeCatchUpSeconds} s after the last was accepted`);
      const lat: Record<string, unknown> = { process: 'meterline ingest (separate process; meterline start processes)', maxAcceptedEventsPerSecond: maxRate, warmUpEvents: Math.round(b.size.ingestProbe / 4), warmUpStoredAfterSeconds: warmUpSeconds, probeCatchUpSeconds, batch: 100 };
      b.results.ingestLatencySeparate = lat;
      // The latency runs go at shares of what the pipeline sustains (see `ingestLatency`), or of
      // this ingest's own maximum when there is no end-to-end figure (e.g. `--only`).
      const sustained = (b.results.e2eHttp as { eventsPerSecond: number } | undefined)?.eventsPerSecond ?? maxRate;
      lat.maxSustainedEventsPerSecond = sustained;
      for (const share of [0.5, 0.9]) {
        b.log(`ingest latency (meterline ingest) at ${share * 100}% of ${sustained} events/s, batches of 100`);
        lat[`at${share * 100}pct`] = await latencyAt(b, ingestUrl, sustained, share, 6 + share, signal);
      }
      b.rss.ingest = peakRssMiB(ingest.proc.pid!);
      await b.waitTotals('separate ingest latency runs');
      lat.redeliveredMessages = (await redelivered(b)) - redeliveredBefore;
      b.log(`  ${JSON.stringify(lat)}`);
    } finally {
      await ingest.stop();
    }
  },
};

/** Ingest latency at 50 % and 90 % of the maximum rate, all roles in one process. */
export const ingestLatency: Section = {
  name: 'ingestLatency',
  summary: '`meterline start`: ingest latency at 50 % and 90 % of the rate the end-to-end HTTP run sustained',
  timeoutMs: 300_000,
  sendsEvents: true,
  async run(b, signal) {
    b.running();
    // The maximum rate is what the whole pipeline sustains (the end-to-end HTTP run: accepted and
    // stored with exact totals); ingest alone accepts more for a while, with the processor falling behind.
    const e2e = b.results.e2eHttp as { eventsPerSecond: number; ingestAcceptedPerSecond: number } | undefined;
    const maxRate = e2e?.eventsPerSecond;
    if (!maxRate) throw new Error('needs the sustained rate of the end-to-end HTTP run');
    const lat: Record<string, unknown> = { process: 'meterline start (all roles)', maxSustainedEventsPerSecond: maxRate, maxAcceptedEventsPerSecond: e2e.ingestAcceptedPerSecond, batch: 100 };
    b.results.ingestLatency = lat;
    for (const share of [0.5, 0.9]) {
      b.log(`ingest latency (meterline start) at ${share * 100}% of ${maxRate} events/s, batches of 100`);
      lat[`at${share * 100}pct`] = await latencyAt(b, b.url, maxRate, share, 3 + share, signal);
    }
    await b.waitTotals('latency runs');
    b.log(`  ${JSON.stringify(lat)}`);
  },
};
