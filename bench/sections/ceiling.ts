import fs from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseExact } from '../../common/json-text.ts';
import { checkEvent } from '../../ingest/index.ts';
import { meterValues, type Meter } from '../../meter/index.ts';
import { BATCH, type Section } from '../harness.ts';
import { spawnNode } from '../lib.ts';
import { BENCH_METERS, LoadGenerator } from '../load.ts';

// The ceiling: straight inserts, and the bare decode-and-validate loop.

/** bench/ceiling.ts in its own process and ClickHouse: the processor's rows inserted straight into events_raw. */
export const ceilingInsert: Section = {
  name: 'ceilingInsert',
  summary: "the rows the processor writes, inserted straight into ClickHouse through its own insert function (bench/ceiling.ts)",
  timeoutMs: 300_000,
  async run(b) {
    b.log(`insert ceiling: ${b.size.ceiling} rows straight into ClickHouse`);
    const c = spawnNode('bench/ceiling.ts', [path.join(b.tmp, 'ceiling-ch'), String(b.size.ceiling)], {});
    await new Promise((r) => c.proc.once('exit', r));
    if (c.proc.exitCode !== 0) throw new Error(`ceiling failed:\n${c.output().slice(-2_000)}`);
    const out = JSON.parse(c.output().trim().split('\n').filter((l) => l.startsWith('{')).at(-1)!) as { insertRowsPerSecond: number; rssPeakMiB: number };
    b.results.ceilingInsert = { rows: b.size.ceiling, rowsPerSecond: out.insertRowsPerSecond };
    b.rss.ceilingProcess = out.rssPeakMiB;
    fs.rmSync(path.join(b.tmp, 'ceiling-ch'), { recursive: true, force: true });
    b.log(`  ${JSON.stringify(b.results.ceilingInsert)}`);
  },
};

/** The processor's decode (`parseExact`) + validate + meter values on one core. */
export const ceilingDecode: Section = {
  name: 'ceilingDecode',
  summary: "the processor's decode (parseExact) + validate + meter values on one core",
  timeoutMs: 180_000,
  async run(b) {
    const gen = new LoadGenerator({ seed: 42, customers: 10_000, duplicateRate: 0, lateRate: 0.01, nowMs: Date.now() });
    const bodies = Array.from({ length: b.size.decode / BATCH }, () => JSON.stringify(gen.batch(BATCH)));
    const meters = BENCH_METERS.map((m, i) => ({ ...m, id: `m${i}`, createdAt: '' }) as unknown as Meter);
    const limits = { maxFutureMs: 600_000, maxPastMs: 60 * 86_400_000 };
    const t0 = performance.now();
    let ok = 0;
    for (const body of bodies) {
      for (const item of parseExact(body).items) {
        const r = checkEvent(item, Date.now(), limits);
        if (r.ok && meterValues(r.event, meters).ok) ok++;
      }
    }
    const s = (performance.now() - t0) / 1000;
    if (ok !== b.size.decode) throw new Error(`decode loop accepted ${ok} of ${b.size.decode}`);
    b.results.ceilingDecode = { events: b.size.decode, eventsPerSecond: Math.round(b.size.decode / s) };
    b.log(`  ${JSON.stringify(b.results.ceilingDecode)}`);
  },
};
