import { performance } from 'node:perf_hooks';
import type { Section } from '../harness.ts';
import { sleep, summarize, waitFor } from '../lib.ts';

/** Freshness: from sending an event to seeing it in the usage API. */
export const freshness: Section = {
  name: 'freshness',
  summary: 'send one event → visible in the usage API',
  timeoutMs: 120_000,
  async run(b, signal) {
    b.running();
    b.log(`freshness: ${b.size.freshness} events`);
    const sentAt = new Map<string, number>();
    const seen = new Map<string, number>();
    const from = new Date(Date.now() - 60_000).toISOString();
    const prefix = `fresh-${Date.now()}-`;
    let polling = true;
    const poller = (async () => {
      while (polling) {
        const r = await b.api<{ data: { subject: string }[] }>(`/api/v1/meters/fresh/query?groupBy=subject&from=${from}`);
        const t = performance.now();
        for (const d of r.data) if (!seen.has(d.subject)) seen.set(d.subject, t);
        await sleep(20);
      }
    })();
    try {
      for (let i = 0; i < b.size.freshness; i++) {
        signal.throwIfAborted();
        const subject = `${prefix}${i}`;
        sentAt.set(subject, performance.now());
        await b.api('/api/v1/events', { method: 'POST', body: JSON.stringify({ specversion: '1.0', id: `${prefix}${i}`, source: 'bench', type: 'fresh.ping', subject }) });
        await sleep(50);
      }
      await waitFor(async () => [...sentAt.keys()].filter((s) => seen.has(s)).length, (k) => k === b.size.freshness, 60_000);
    } finally {
      polling = false;
      await poller.catch(() => undefined);
    }
    b.results.freshness = { events: b.size.freshness, pollIntervalMs: 20, ms: summarize([...sentAt].map(([s, t]) => seen.get(s)! - t)) };
    b.log(`  ${JSON.stringify(b.results.freshness)}`);
  },
};
