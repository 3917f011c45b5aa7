/**
 * Runs in its own process (it owns an embedded ClickHouse): the ceilings and the query figures.
 *
 *   node --import tsx bench/ceiling.ts <dataDir> <insertEvents> <queryRowsCsv>
 *
 * 1. insert ceiling: the rows the processor would write for `insertEvents` events, inserted
 *    straight into events_raw (same table, same views, same batch size), rows/s;
 * 2. usage queries: `meter_values` filled by ClickHouse itself (INSERT ... SELECT FROM numbers)
 *    to each size in `queryRowsCsv`, then a customer's month by hour (the API's own SQL), p50/p99.
 * Prints one JSON object on stdout.
 */
import { performance } from 'node:perf_hooks';
import { migrate, openStore } from '../common/clickhouse.ts';
import { silentLogger } from '../common/logger.ts';
import { planUsageQuery } from '../api/usage-plan.ts';
import { summarize, round } from './lib.ts';

const [dataDir, insertEventsArg, queryRowsArg] = process.argv.slice(2);
const store = await openStore({ dataDir: dataDir!, db: 'bench', ...(process.env.CLICKHOUSE_URL ? { url: process.env.CLICKHOUSE_URL } : {}) });
await migrate(store, silentLogger());
const { ch, db } = store;

// 1. Insert ceiling.
const insertEvents = Number(insertEventsArg);
const BATCH = 10_000;
const now = Date.now();
let t0 = performance.now();
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

// 2. Usage queries at growing sizes.
const MONTH_START = Date.UTC(2026, 9, 1);
const queries: Record<string, { rows: number; fillSeconds: number; p50Ms: number; p99Ms: number; n: number }> = {};
let filled = 0;
for (const target of (queryRowsArg ?? '').split(',').filter(Boolean).map(Number)) {
  const add = target - filled;
  t0 = performance.now();
  // 10,000 customers, events spread over October 2026, in chunks so memory stays flat.
  const CHUNK = 5_000_000;
  for (let off = 0; off < add; off += CHUNK) {
    const n = Math.min(CHUNK, add - off);
    await ch.command({
      query: `INSERT INTO ${db}.meter_values (meter_id, subject, time, ingested_at, source, id, value, value_key, group_by)
              SELECT 'm-q', concat('cust-', toString(cityHash64(number) % 10000)), fromUnixTimestamp64Milli(toInt64({start:Int64} + (cityHash64(number, 1) % 2678400000))),
                     now64(3), 'gen', toString(number + {off:UInt64}), toDecimal128(cityHash64(number, 2) % 1000, 9), '', map('model', if(number % 3 = 0, 'large', 'small'))
              FROM numbers({n:UInt64})`,
      query_params: { start: MONTH_START, off: filled + off, n },
      clickhouse_settings: { max_insert_threads: '2' },
    });
  }
  filled = target;
  const fillSeconds = (performance.now() - t0) / 1000;
  await ch.command({ query: `OPTIMIZE TABLE ${db}.meter_usage_1h FINAL` }).catch(() => undefined);
  const samples: number[] = [];
  for (let i = 0; i < 60; i++) {
    const plan = planUsageQuery(
      { meterId: 'm-q', aggregation: 'SUM', fromMs: MONTH_START, toMs: Date.UTC(2026, 10, 1), windowSize: 'HOUR', timeZone: 'UTC', subjects: [`cust-${(i * 97) % 10000}`], groupBy: [], filterGroupBy: {} },
      db,
    );
    const s = performance.now();
    const rs = await ch.query({ query: plan.sql, query_params: plan.params, format: 'JSONEachRow' });
    await rs.json();
    if (i >= 10) samples.push(performance.now() - s); // the first ten warm caches
  }
  const sum = summarize(samples);
  queries[String(target)] = { rows: target, fillSeconds: round(fillSeconds, 1), p50Ms: sum.p50, p99Ms: sum.p99, n: sum.n };
}

process.stdout.write(JSON.stringify({ insertEvents, insertSeconds: round(insertSeconds, 2), insertRowsPerSecond: Math.round(insertEvents / insertSeconds), queries }) + '\n');
await store.close();
