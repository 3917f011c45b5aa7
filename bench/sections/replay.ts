import { performance } from 'node:perf_hooks';
import type { Section } from '../harness.ts';
import { peakRssMiB, round } from '../lib.ts';

/** Processor replay: catching up on a stream that is already full. */
export const replay: Section = {
  name: 'replay',
  summary: 'events published while the processor is down, then `meterline start` catches up',
  timeoutMs: 480_000,
  sendsEvents: true,
  async run(b, signal) {
    b.running();
    b.log(`replay: ${b.size.replay} events published while the processor is down`);
    b.rss.startBeforeReplay = peakRssMiB(b.child!.proc.pid!);
    await b.child!.stop();
    const gen = b.newGen(9);
    await b.publishNats(gen, b.size.replay, signal, true);
    const t0 = performance.now();
    await b.startAll();
    await b.waitTotals('replay');
    const seconds = (performance.now() - t0) / 1000;
    b.results.replay = { events: b.size.replay, seconds: round(seconds), eventsPerSecond: Math.round(b.size.replay / seconds), includesStartSeconds: true, totalsExact: true };
    b.rss.startAfterReplay = peakRssMiB(b.child!.proc.pid!);
    b.log(`  ${JSON.stringify(b.results.replay)}`);
  },
  /** A replay that did not finish may leave `meterline start` stopped: the sections after it need it. */
  async after(b) {
    const c = b.child;
    if (c && (c.proc.exitCode !== null || c.proc.signalCode !== null) && b.sections.replay?.status !== 'ok') await b.startAll().catch((err: unknown) => b.log(String(err)));
  },
};
