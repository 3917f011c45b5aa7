/**
 * Runs in its own process (it owns an embedded ClickHouse): the insert ceiling.
 *
 *   node --import tsx bench/ceiling.ts <dataDir> <insertEvents>
 *
 * The rows the processor writes for `insertEvents` events of the load generator (the same
 * seed-42 mix as the end-to-end runs, no duplicates: every event becomes a row, with the bench
 * meters' values), inserted straight into events_raw (same table, same views, same insert
 * function as the processor, batches of PROCESSOR_MAX_EVENTS' default 20,000). Only the inserts
 * are timed: rows/s of ClickHouse alone. Prints one JSON object on stdout. (The stored events of
 * the usage-query figure are bench/stored-events.ts.)
 */
import { performance } from 'node:perf_hooks';
import { migrate, openStore } from '../common/clickhouse.ts';
import { silentLogger } from '../common/logger.ts';
import { checkEvent } from '../ingest/cloudevents.ts';
import { meterValues, type Meter } from '../meter/index.ts';
import { insertRawRows, type RawRow } from '../processor/raw-rows.ts';
import { peakRssMiB, round } from './lib.ts';
import { BENCH_METERS, LoadGenerator } from './load.ts';

const [dataDir, insertEventsArg] = process.argv.slice(2);
const store = await openStore({ dataDir: dataDir!, db: 'bench', ...(process.env.CLICKHOUSE_URL ? { url: process.env.CLICKHOUSE_URL } : {}) });
await migrate(store, silentLogger());

const insertEvents = Number(insertEventsArg);
const BATCH = 20_000;
const now = Date.now();
const gen = new LoadGenerator({ seed: 42, customers: 10_000, duplicateRate: 0, lateRate: 0.01, nowMs: now });
const meters = BENCH_METERS.map((m, i) => ({ ...m, id: `m${i}`, createdAt: '' }) as unknown as Meter);
const limits = { maxFutureMs: 600_000, maxPastMs: 60 * 86_400_000 };
let insertMs = 0;
let meterRows = 0;
for (let done = 0, seq = 0; done < insertEvents; done += BATCH) {
  const rows: RawRow[] = gen.batch(Math.min(BATCH, insertEvents - done)).map((e) => {
    const r = checkEvent(e, now, limits);
    if (!r.ok) throw new Error(`generated event invalid: ${JSON.stringify(r.errors)}`);
    const mv = meterValues(r.event, meters);
    if (!mv.ok) throw new Error(mv.reason);
    meterRows += mv.values.length;
    return { source: e.source, id: e.id, type: e.type, subject: e.subject, time: r.event.timeMs, ingested_at: now, received_at: now, data: JSON.stringify(e.data), stream_seq: ++seq, meter_values: mv.values };
  });
  const t0 = performance.now();
  await insertRawRows(store, rows, `ceiling-${done}`);
  insertMs += performance.now() - t0;
}
const insertSeconds = insertMs / 1000;

process.stdout.write(JSON.stringify({ insertEvents, meterRows, insertSeconds: round(insertSeconds, 2), insertRowsPerSecond: Math.round(insertEvents / insertSeconds), rssPeakMiB: peakRssMiB(process.pid) }) + '\n');
await store.close();
