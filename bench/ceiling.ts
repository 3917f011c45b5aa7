/**
 * Runs in its own process (it owns an embedded ClickHouse): the insert ceiling.
 *
 *   node --import tsx bench/ceiling.ts <dataDir> <insertEvents>
 *
 * The rows the processor would write for `insertEvents` events, inserted straight into
 * events_raw (same table, same views, batches of 10,000), rows/s. Prints one JSON object on
 * stdout. (The stored events of the usage-query figure are bench/stored-events.ts.)
 */
import { performance } from 'node:perf_hooks';
import { migrate, openStore } from '../common/clickhouse.ts';
import { silentLogger } from '../common/logger.ts';
import { peakRssMiB, round } from './lib.ts';

const [dataDir, insertEventsArg] = process.argv.slice(2);
const store = await openStore({ dataDir: dataDir!, db: 'bench', ...(process.env.CLICKHOUSE_URL ? { url: process.env.CLICKHOUSE_URL } : {}) });
await migrate(store, silentLogger());
const { ch, db } = store;

// 1. Insert ceiling.
const insertEvents = Number(insertEventsArg);
const BATCH = 10_000;
const now = Date.now();
const t0 = performance.now();
for (let done = 0; done < insertEvents; done += BATCH) {
  const rows = Array.from({ length: Math.min(BATCH, insertEvents - done) }, (_, j) => {
    const i = done + j;
    return {
      source: 'ceiling',
      id: `c-${i}`,
      type: 'llm.usage',
      subject: `cust-${i % 1000}`,
      time: now - (i % 100_000),
      ingested_at: now,
      received_at: now,
      data: `{"tokens":"${i % 4000}.5","model":"small"}`,
      stream_seq: i,
      meter_values: [{ meter_id: 'm-tokens', value: `${i % 4000}.5`, value_key: '', group_by: { model: 'small' } }],
    };
  });
  await ch.insert({ table: `${db}.events_raw`, values: rows, format: 'JSONEachRow', clickhouse_settings: { insert_deduplication_token: `ceiling-${done}`, deduplicate_blocks_in_dependent_materialized_views: 1 } });
}
const insertSeconds = (performance.now() - t0) / 1000;

process.stdout.write(JSON.stringify({ insertEvents, insertSeconds: round(insertSeconds, 2), insertRowsPerSecond: Math.round(insertEvents / insertSeconds), rssPeakMiB: peakRssMiB(process.pid) }) + '\n');
await store.close();
