import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Decimal } from '../common/decimal.ts';
import type { NatsServerHandle } from '../common/nats-server.ts';
import { client, total } from './api-client.ts';
import { ce, eventually, startTestNats, startTestRuntime, testConfig, type TestRuntime } from './harness.ts';

/**
 * Revenue recognition and the journal on real closes (docs/revenue.md):
 * - tokyo (Asia/Tokyo, USD): $30/month in advance, calls at $0.50, 10% off every invoice. Its
 *   October calls are ingested after October's cutoff, so November's invoice bills them as a
 *   correction (recognized in November, when invoiced).
 * - ny (America/New_York, EUR): €31/month in advance from 15 October; its first invoice bills
 *   15 Oct - 15 Nov and 15 Nov - 15 Dec in advance, recognized by local day across the DST change
 *   of 1 November (a 25-hour day that counts as one).
 */
describe('revenue recognition and journal tie out to real invoices', () => {
  let nats: NatsServerHandle;
  let rt: TestRuntime;
  let c: ReturnType<typeof client>;
  const invoices: { customer: string; currency: string; periodStart: string; total: string; totalMinor: string }[] = [];

  beforeAll(async () => {
    nats = await startTestNats();
    // ingested_at is stamped as if it were 20 November: after October's cutoff, before November's.
    const shiftMs = Date.now() - Date.parse('2026-11-20T00:00:00Z');
    rt = await startTestRuntime(testConfig(nats.url, { INGEST_MAX_PAST: '400d', BILLING_SCHEDULE: '0 0 1 1 *' }), undefined, { now: () => Date.now() - shiftMs });
    c = client(rt.app!, rt.adminKey);
    const post = async (url: string, body: unknown) => {
      const r = await c.post(url, body);
      if (r.statusCode >= 300) throw new Error(`${url}: ${r.statusCode} ${r.body}`);
      return r;
    };
    await c.createMeter({ slug: 'calls', eventType: 'call', aggregation: 'COUNT' });
    const charges = [{ key: 'calls', meter: 'calls', price: { model: 'per_unit', unitPrice: '0.50' } }];
    await post('/api/v1/plans', { key: 'pro', name: 'Pro', currency: 'USD', interval: 'month', baseFee: { amount: '30', timing: 'advance' }, charges });
    await post('/api/v1/plans', { key: 'eu', name: 'EU', currency: 'EUR', interval: 'month', baseFee: { amount: '31', timing: 'advance' }, charges });
    await post('/api/v1/customers', { key: 'tokyo', name: 'Tokyo', currency: 'USD', timeZone: 'Asia/Tokyo' });
    await post('/api/v1/customers', { key: 'ny', name: 'NY', currency: 'EUR', timeZone: 'America/New_York' });
    await post('/api/v1/subscriptions', { customer: 'tokyo', plan: 'pro', start: '2026-09-30T15:00:00Z', discounts: [{ type: 'percent', value: '10' }] });
    await post('/api/v1/subscriptions', { customer: 'ny', plan: 'eu', start: '2026-10-15T04:00:00Z' });
    // tokyo: 4 calls in October, 2 in November (local time).
    const at = (iso: string, i: number) => new Date(Date.parse(iso) + i * 60_000).toISOString();
    const events = [...[0, 1, 2, 3].map((i) => ce({ id: `oct-${i}`, type: 'call', subject: 'tokyo', time: at('2026-10-10T03:00:00Z', i) })), ...[0, 1].map((i) => ce({ id: `nov-${i}`, type: 'call', subject: 'tokyo', time: at('2026-11-10T03:00:00Z', i) }))];
    expect((await c.ingest(events)).statusCode).toBe(202);
    await eventually(() => total(c, 'calls', 'tokyo'), (v) => v === '6');
    await post('/api/v1/billing/close', { period: '2026-10' });
    // Only tokyo in November: ny's November period ends on 15 December.
    await post('/api/v1/billing/close', { period: '2026-11', customer: 'tokyo' });
    const list = await c.get('/api/v1/invoices?status=finalized');
    expect(list.statusCode).toBe(200);
    const body = list.json() as { items?: typeof invoices } | typeof invoices;
    invoices.push(...(Array.isArray(body) ? body : body.items ?? []));
  }, 120_000);

  afterAll(async () => {
    await rt?.stop();
    await nats?.stop();
  });

  const report = async (month: string) => {
    const r = await c.get(`/api/v1/revenue?month=${month}`);
    expect(r.statusCode).toBe(200);
    return r.json() as { rows: { customer: string; currency: string; product: string; deferredOpening: string; billed: string; recognized: string; deferredClosing: string }[]; totals: { currency: string; billed: string; recognized: string; deferredOpening: string; deferredClosing: string }[] };
  };
  const row = (r: Awaited<ReturnType<typeof report>>, customer: string, product: string) => {
    const x = r.rows.find((y) => y.customer === customer && y.product === product);
    return x && [x.deferredOpening, x.billed, x.recognized, x.deferredClosing];
  };
  /** Sum of the finalized invoice totals filed in `month` (periods starting in it, local), per currency. */
  const invoiceTotals = (localStarts: Record<string, string>) => {
    const out: Record<string, string> = {};
    for (const inv of invoices) if (localStarts[inv.customer] === inv.periodStart) out[inv.currency] = new Decimal(out[inv.currency] ?? 0).plus(inv.total).toFixed(2);
    return out;
  };

  it('closed three invoices: October for both customers, November for tokyo', () => {
    expect(invoices.map((i) => [i.customer, i.periodStart, i.total]).sort()).toEqual([
      // 30 (October) + 30 (November, in advance) - 10 % = 54.00; no usage: it arrived after the cutoff.
      ['ny', '2026-10-15T04:00:00.000Z', '62.00'],
      ['tokyo', '2026-09-30T15:00:00.000Z', '54.00'],
      // 30 (December, in advance) + 1.00 usage - 3.10 (10 % of 31) + 2.00 correction for October's 4 calls.
      ['tokyo', '2026-10-31T15:00:00.000Z', '29.90'],
    ]);
  });

  it('October: advance fees recognized by local day; the deferred part waits for its month', async () => {
    const r = await report('2026-10');
    // tokyo: 60 billed less 6 discount; October's 27 (30 less its 3 of discount) recognized.
    expect(row(r, 'tokyo', 'base_fee')).toEqual(['0.00', '54.00', '27.00', '27.00']);
    // ny: 17 of the first fee's 31 days are in October, so 17.00; the rest deferred.
    expect(row(r, 'ny', 'base_fee')).toEqual(['0.00', '62.00', '17.00', '45.00']);
    expect(r.totals.map((t) => [t.currency, t.billed])).toEqual(Object.entries(invoiceTotals({ tokyo: '2026-09-30T15:00:00.000Z', ny: '2026-10-15T04:00:00.000Z' })).sort());
  });

  it('November: the correction recognized when invoiced, the deferral released, the roll-forward exact', async () => {
    const r = await report('2026-11');
    expect(row(r, 'tokyo', 'base_fee')).toEqual(['27.00', '27.00', '27.00', '27.00']);
    // 1.00 usage - 0.10 of the discount + 2.00 correction of October.
    expect(row(r, 'tokyo', 'usage.calls')).toEqual(['0.00', '2.90', '2.90', '0.00']);
    // ny: 14 days of the first fee (1 November counts one day though it has 25 hours): 14.00; and
    // 16 of the second's 30 days (15 Nov - 15 Dec): 31 × 16/30 = 16.533 → 16.53; December keeps 14.47.
    expect(row(r, 'ny', 'base_fee')).toEqual(['45.00', '0.00', '30.53', '14.47']);
    for (const t of r.totals) expect(new Decimal(t.deferredOpening).plus(t.billed).minus(t.recognized).toFixed(2)).toBe(t.deferredClosing);
    expect(r.totals.find((t) => t.currency === 'USD')!.billed).toBe(invoiceTotals({ tokyo: '2026-10-31T15:00:00.000Z' }).USD);
  });

  it('the reconciliation check passes for both months', async () => {
    for (const month of ['2026-10', '2026-11']) {
      const r = await c.get(`/api/v1/journal/check?month=${month}`);
      expect(r.statusCode).toBe(200);
      const body = r.json() as { ok: boolean; checks: { name: string; currency: string; ok: boolean }[] };
      expect(body.checks.filter((x) => !x.ok)).toEqual([]);
      expect(body.ok).toBe(true);
      expect(new Set(body.checks.map((x) => x.currency))).toEqual(new Set(['USD', 'EUR']));
    }
  });

  it('the generic journal balances per currency and its A/R is the invoice totals', async () => {
    const r = await c.get('/api/v1/journal?month=2026-11&format=generic');
    expect(r.statusCode).toBe(200);
    expect(r.headers['content-type']).toMatch(/^text\/csv/);
    const [header, ...lines] = r.body.trim().split('\r\n').map((l) => l.split(','));
    const col = (name: string) => header!.indexOf(name);
    const sum = (pred: (l: string[]) => boolean, c2: string) => lines.filter(pred).reduce((a, l) => a.plus(l[col(c2)] || 0), new Decimal(0)).toFixed(2);
    for (const cur of ['USD', 'EUR']) expect(sum((l) => l[col('currency')] === cur, 'debit')).toBe(sum((l) => l[col('currency')] === cur, 'credit'));
    expect(sum((l) => l[col('account')] === 'Accounts Receivable (A/R)', 'debit')).toBe('29.90');
    // ny's deferral moves to revenue in the recognition entry: 30.53 of EUR.
    expect(lines.filter((l) => l[col('entry')] === 'REV-2026-11-EUR').map((l) => [l[col('account')], l[col('debit')], l[col('credit')]])).toEqual([
      ['Deferred Revenue', '30.53', ''],
      ['Revenue:base_fee', '', '30.53'],
    ]);
  });

  it('QuickBooks and Xero take one currency at a time: refused with the way out, then given', async () => {
    const mixed = await c.get('/api/v1/journal?month=2026-11&format=quickbooks');
    expect(mixed.statusCode).toBe(400);
    expect(mixed.json().message).toMatch(/query\.currency: .*EUR, USD; give currency=EUR/);
    const qbo = await c.get('/api/v1/journal?month=2026-11&format=quickbooks&currency=EUR');
    expect(qbo.statusCode).toBe(200);
    expect(qbo.body.split('\r\n')[0]).toBe('Journal No,Journal Date,Account Name,Debits,Credits,Description,Name');
    expect(qbo.body).toContain('REV-2026-11-EUR,11/30/2026,Deferred Revenue,30.53,,');
    const xero = await c.get('/api/v1/journal?month=2026-11&format=xero&currency=USD&xeroTaxRate=No%20VAT');
    expect(xero.statusCode).toBe(200);
    expect(xero.body.split('\r\n')[0]).toBe('Narration,Date,Description,AccountCode,TaxRate,Amount,TrackingName1,TrackingOption1');
    const amounts = xero.body.trim().split('\r\n').slice(1).map((l) => l.split(',').at(-3)!);
    expect(amounts.reduce((a, x) => a.plus(x), new Decimal(0)).toFixed(2)).toBe('0.00');
  });

  it('CSV of the report, and a bad month named in the error', async () => {
    const csv = await rt.app!.inject({ method: 'GET', url: '/api/v1/revenue?month=2026-11', headers: { authorization: `Bearer ${rt.adminKey}`, accept: 'text/csv' } });
    expect(csv.body.split('\r\n')[0]).toBe('month,customer,currency,product,deferred_opening,billed,recognized,deferred_closing');
    expect(csv.body).toContain('2026-11,ny,EUR,base_fee,45.00,0.00,30.53,14.47');
    const bad = await c.get('/api/v1/revenue?month=2026-13');
    expect(bad.statusCode).toBe(400);
    expect(bad.json().message).toContain('query.month');
  });
});
