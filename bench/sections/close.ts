import { performance } from 'node:perf_hooks';
import type { Section } from '../harness.ts';
import { peakRssMiB, round } from '../lib.ts';

/** Billing close through the API of 10k and then 100k subscriptions (quick: 200 and 1,000). */
export const close: Section = {
  name: 'close',
  summary: 'billing close through the API of the first set of subscriptions, then of the larger one (only new invoices each time); peak RSS',
  timeoutMs: 900_000,
  async run(b, signal) {
    b.running();
    await b.api('/api/v1/plans', {
      method: 'POST',
      body: JSON.stringify({ key: 'bench', name: 'Bench', currency: 'USD', interval: 'month', baseFee: { amount: '10', timing: 'arrears' }, charges: [{ key: 'calls', meter: 'calls', price: { model: 'graduated', tiers: [{ upTo: '100', unitPrice: '0.01' }, { upTo: null, unitPrice: '0.005' }] } }, { key: 'tokens', meter: 'tokens', price: { model: 'per_unit', unitPrice: '0.00001' } }] }),
    });
    // Every subscription starts two months ago. The first close is of that month's periods for the
    // first `closeSubs[0]` subscriptions; the next adds subscriptions up to `closeSubs[1]` and closes
    // the following month's periods of all of them, so each close finalizes only new invoices.
    const now = new Date();
    const start = Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - 2, 1);
    const months = [new Date(start).toISOString().slice(0, 7), new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - 1, 1)).toISOString().slice(0, 7)];
    const out: Record<string, unknown>[] = [];
    b.results.close = out;
    let created = 0;
    for (const [i, subs] of b.size.closeSubs.entries()) {
      b.log(`billing close: creating customers and subscriptions up to ${subs}`);
      const t0 = performance.now();
      while (created < subs) {
        signal.throwIfAborted();
        const from = created;
        const count = Math.min(50, subs - created);
        await Promise.all(
          Array.from({ length: count }, async (_, j) => {
            const k = from + j;
            await b.api('/api/v1/customers', { method: 'POST', body: JSON.stringify({ key: `cust-${k}`, name: `Customer ${k}`, currency: 'USD' }) });
            await b.api('/api/v1/subscriptions', { method: 'POST', body: JSON.stringify({ id: `bench-${k}`, customer: `cust-${k}`, plan: 'bench', start: new Date(start).toISOString() }) });
          }),
        );
        created += count;
        if (created % 10_000 === 0) b.log(`  ${created} subscriptions`);
      }
      const setupSeconds = (performance.now() - t0) / 1000;
      const month = months[Math.min(i, months.length - 1)]!;
      b.log(`billing close of ${month}: ${subs} subscriptions`);
      const t1 = performance.now();
      const r = await b.api<{ invoices: unknown[]; skipped: unknown[] }>('/api/v1/billing/close', { method: 'POST', body: JSON.stringify({ period: month }) });
      const seconds = (performance.now() - t1) / 1000;
      const rssAfter = peakRssMiB(b.child!.proc.pid!);
      out.push({ subscriptions: subs, period: month, invoices: r.invoices.length, skipped: r.skipped.length, seconds: round(seconds), subscriptionsPerSecond: round(subs / seconds, 1), setupSeconds: round(setupSeconds, 1), startPeakRssMiBAfter: rssAfter });
      b.rss[`startAfterClose${subs}`] = rssAfter;
      b.log(`  ${JSON.stringify(out.at(-1))}`);
      b.save();
    }
  },
};
