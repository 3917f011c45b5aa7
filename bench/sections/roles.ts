import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { freePort } from '../../common/nats-server.ts';
import type { Section } from '../harness.ts';
import { peakRssMiB, round, spawnNode, waitFor, type Child } from '../lib.ts';
import { LoadGenerator } from '../load.ts';

/**
 * `meterline store` (the embedded ClickHouse served over HTTP, so several processes share it),
 * `meterline processor`, `api`, `scheduler` and `ingest`, each a process of its own on the same
 * NATS (the catalog holds the close section's customers and subscriptions). `size.roles` events go
 * in through the ingest process; the totals are checked exactly through the api process; then
 * each process's peak RSS is read. The scheduler only idles here (its cron is a year away).
 */
export const roles: Section = {
  name: 'roles',
  summary: 'every role in its own process (store, processor, api, scheduler, ingest): events through them with exact totals, peak RSS of each',
  timeoutMs: 300_000,
  async run(b, signal) {
    if (!b.nats) throw new Error('needs nats-server');
    const procs: Record<string, Child> = {};
    const running = (role: string, what: string, timeoutMs = 120_000) =>
      waitFor(async () => procs[role]!.output(), (o) => o.includes(what) || procs[role]!.proc.exitCode !== null, timeoutMs, 100).then((o) => {
        if (!o.includes(what)) throw new Error(`meterline ${role} did not start (no "${what}"):\n${o.slice(-2_000)}`);
      });
    try {
      const storePort = await freePort();
      procs.store = spawnNode('cli/main.ts', ['store', '--port', String(storePort), '--data-dir', path.join(b.tmp, 'roles-ch')], { ...b.env, METERLINE_STATE_DIR: path.join(b.tmp, 'roles-store') });
      await running('store', 'CLICKHOUSE_URL=');
      const urls: Record<string, string> = {};
      // One after the other: started all at once on 2 cores with a large catalog, one of them once
      // failed its start with "meterline: timeout".
      for (const role of ['processor', 'api', 'scheduler', 'ingest']) {
        const port = await freePort();
        urls[role] = `http://127.0.0.1:${port}`;
        procs[role] = spawnNode('cli/main.ts', [role], { ...b.env, PORT: String(port), METERLINE_STATE_DIR: path.join(b.tmp, `roles-${role}`), CLICKHOUSE_URL: `http://127.0.0.1:${storePort}` });
        await running(role, 'Meterline is running');
      }
      await b.readyAt(urls.api!);
      await b.readyAt(urls.ingest!);
      b.log(`roles: ${b.size.roles} events through the separate ingest, processor, store and api`);
      const gen = new LoadGenerator({ seed: 11, customers: 10_000, duplicateRate: 0.03, lateRate: 0.01, nowMs: Date.now() });
      const t0 = performance.now();
      await b.sendHttp(urls.ingest!, gen, b.size.roles, 8, signal);
      const want = { calls: String(gen.expected.calls), tokens: gen.expected.tokens.toFixed(), bytes: gen.expected.bytes.toFixed(), users: String(gen.expected.users.size) };
      await b.waitTotals('roles', 600_000, urls.api!, want);
      const seconds = (performance.now() - t0) / 1000;
      const peak: Record<string, number> = {};
      for (const [role, c] of Object.entries(procs)) peak[role] = peakRssMiB(c.proc.pid!);
      b.results.roles = { events: b.size.roles, seconds: round(seconds), eventsPerSecond: Math.round(b.size.roles / seconds), totalsExact: true, peakRssMiB: peak };
      for (const [role, v] of Object.entries(peak)) b.rss[`role_${role}`] = v;
      b.log(`  ${JSON.stringify(b.results.roles)}`);
    } finally {
      for (const role of ['ingest', 'api', 'scheduler', 'processor', 'store']) await procs[role]?.stop();
    }
  },
};
