import type { Bench, Section } from '../harness.ts';
import { BENCH_METERS } from '../load.ts';

/** Set-up: nats-server, `meterline start`, meters. */
export const start: Section = {
  name: 'start',
  summary: 'nats-server and `meterline start` (all roles, embedded ClickHouse) as child processes; the meters (always runs)',
  timeoutMs: 120_000,
  async run(b: Bench) {
    await b.startServices();
    for (const m of [...BENCH_METERS, { slug: 'fresh', eventType: 'fresh.ping', aggregation: 'COUNT' }]) await b.api('/api/v1/meters', { method: 'POST', body: JSON.stringify(m) });
    // The meter of the stored events (bench/stored-events.ts): created here so `meterline api` knows it.
    const stored = await b.api<{ id: string }>('/api/v1/meters', { method: 'POST', body: JSON.stringify({ slug: 'stored', eventType: 'stored.usage', aggregation: 'SUM', valueProperty: '$.tokens', groupBy: { model: '$.model' } }) });
    b.storedMeterId = stored.id;
  },
};
