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
 *   --help                the options and the sections
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
 *
 * This file only picks the sections (bench/sections/) and their order; bench/harness.ts runs
 * them, holds the processes they share and writes the results.
 */
import { Bench, parseOptions } from './harness.ts';
import { ceilingDecode, ceilingInsert } from './sections/ceiling.ts';
import { accounts } from './sections/accounts.ts';
import { close } from './sections/close.ts';
import { dedupMemory } from './sections/dedup-memory.ts';
import { e2eHttp, e2eNats, e2eNatsRouted } from './sections/e2e.ts';
import { freshness } from './sections/freshness.ts';
import { ingestLatency, ingestLatencySeparate } from './sections/ingest-latency.ts';
import { replay } from './sections/replay.ts';
import { roles } from './sections/roles.ts';
import { start } from './sections/start.ts';
import { usageQueries } from './sections/usage-queries.ts';

/** Against `meterline start`, which `start` brings up. */
const ON_START = [start, e2eHttp, e2eNats, e2eNatsRouted, ingestLatencySeparate, ingestLatency, freshness, replay, accounts, close];
/** With processes of their own, once `meterline start` has stopped (the nats-server stays). */
const OWN_PROCESSES = [roles, ceilingInsert, ceilingDecode, dedupMemory, usageQueries];

const opts = parseOptions(process.argv.slice(2), [...ON_START, ...OWN_PROCESSES]);
if (opts) {
  const bench = new Bench(opts);
  for (const s of ON_START) await bench.run(s);
  await bench.stopStart();
  for (const s of OWN_PROCESSES) await bench.run(s);
  await bench.finish();
}
