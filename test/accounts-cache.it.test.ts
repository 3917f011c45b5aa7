import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Decimal } from 'decimal.js';
import type { NatsServerHandle } from '../common/nats-server.ts';
import { silentLogger } from '../common/logger.ts';
import { AnomalyStore } from '../anomaly/index.ts';
import { ClickHouseAdjustments, ClickHouseInvoiceStore } from '../rater/index.ts';
import { ClickHouseUsageStore } from '../usage/index.ts';
import { accountSummaries, type AccountDeps } from '../api/accounts.ts';
import type { AccountRow, AccountsPage } from '../api/contracts.ts';
import { client } from './api-client.ts';
import { ce, eventually, startTestNats, startTestRuntime, testConfig, type TestRuntime } from './harness.ts';

/**
 * GET /api/v1/accounts is served from the accounts cache (api/accounts-cache.ts): on a real
 * runtime, its rows must be what the on-demand computation (`accountSummaries`) gives at each
 * row's `computedAt`; new usage of one customer recomputes that customer only; a catalog change
 * shows; and the page, sort, order and search parameters work (bad ones refused by name).
 */
describe('accounts cache', () => {
  let nats: NatsServerHandle;
  let rt: TestRuntime;
  let c: ReturnType<typeof client>;
  let deps: AccountDeps;
  const monthStart = (() => {
    const d = new Date();
    return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1);
  })();
  // Five customers: four on the plan with usage in different amounts, one without a subscription.
  const customers = [
    { key: 'acc-1', name: 'Zeta Labs', calls: 3 },
    { key: 'acc-2', name: 'Alpha Works', calls: 12 },
    { key: 'acc-3', name: 'Mango Ltd', calls: 7 },
    { key: 'acc-4', name: 'Beta Corp', calls: 1 },
    { key: 'acc-5', name: 'No Plan Inc', calls: 0 },
  ];
  let seq = 0;
  const events = (subject: string, n: number) => Array.from({ length: n }, () => ce({ id: `e-${seq++}`, type: 'call', subject, time: new Date(Date.now() - 60_000).toISOString(), data: { tokens: '2.5' } }));

  const page = async (qs = '') => {
    const r = await c.get(`/api/v1/accounts${qs}`);
    if (r.statusCode !== 200) throw new Error(`accounts: ${r.statusCode} ${r.body}`);
    return r.json() as AccountsPage;
  };
  const usageOf = (row: AccountRow | undefined, meter: string) => row?.usage.find((u) => u.meter === meter)?.value;
  const post = async (url: string, body: unknown) => {
    const r = await c.post(url, body);
    if (r.statusCode >= 300) throw new Error(`${url}: ${r.statusCode} ${r.body}`);
  };

  beforeAll(async () => {
    nats = await startTestNats();
    rt = await startTestRuntime(testConfig(nats.url, { BILLING_SCHEDULE: '0 0 1 1 *', ANOMALY_SCHEDULE: '0 0 1 1 *' }));
    c = client(rt.app!, rt.adminKey);
    await c.createMeter({ slug: 'calls', eventType: 'call', aggregation: 'COUNT' });
    await c.createMeter({ slug: 'tokens', eventType: 'call', aggregation: 'SUM', valueProperty: '$.tokens' });
    await post('/api/v1/plans', { key: 'std', name: 'Standard', currency: 'USD', interval: 'month', baseFee: { amount: '20', timing: 'arrears' }, charges: [{ key: 'calls', meter: 'calls', price: { model: 'per_unit', unitPrice: '0.37' } }, { key: 'tokens', meter: 'tokens', price: { model: 'per_unit', unitPrice: '0.011' } }] });
    for (const x of customers) {
      await post('/api/v1/customers', { key: x.key, name: x.name, currency: 'USD' });
      if (x.calls > 0) await post('/api/v1/subscriptions', { id: `sub-${x.key}`, customer: x.key, plan: 'std', start: new Date(monthStart).toISOString() });
    }
    const all = customers.flatMap((x) => events(x.key, x.calls));
    expect((await c.ingest(all)).statusCode).toBe(202);
    deps = {
      usage: new ClickHouseUsageStore({ store: rt.store! }),
      meters: rt.catalog.meters,
      billing: rt.billing!,
      customers: rt.catalog.customers,
      plans: rt.catalog.plans,
      subscriptions: rt.catalog.subscriptions,
      anomalies: new AnomalyStore(rt.store!),
      logger: silentLogger(),
    };
    // The cache has caught up once every customer's calls are in it.
    await eventually(() => page('?pageSize=10'), (p) => customers.every((x) => usageOf(p.items.find((i) => i.customer.key === x.key), 'calls') === String(x.calls)), 60_000);
  }, 120_000);

  afterAll(async () => {
    await rt?.stop();
    await nats?.stop();
  });

  it('serves what accountSummaries computes for the same customers at the same instant', async () => {
    const p = await page('?pageSize=10&sort=key');
    expect(p.totalCount).toBe(customers.length);
    expect(p.items.map((i) => i.customer.key)).toEqual(customers.map((x) => x.key).sort());
    // Rows computed together share one instant: compute each group again on demand.
    const byInstant = new Map<string, AccountRow[]>();
    for (const row of p.items) byInstant.set(row.computedAt, [...(byInstant.get(row.computedAt) ?? []), row]);
    for (const [at, rows] of byInstant) {
      const fresh = await accountSummaries(deps, rows.map((r) => r.customer.key), Date.parse(at));
      expect(rows.map(({ computedAt: _c, ...rest }) => rest)).toEqual(fresh.items);
    }
    // The numbers are real: 20 base fee (in arrears) + calls * 0.37 + tokens * 0.011 so far.
    const row = p.items.find((i) => i.customer.key === 'acc-2')!;
    expect(usageOf(row, 'tokens')).toBe('30');
    expect(row.projected?.amountSoFar).toBe(new Decimal(20).plus(new Decimal(12).times('0.37')).plus(new Decimal(30).times('0.011')).toFixed(2));
    expect(p.items.find((i) => i.customer.key === 'acc-5')!.projected).toBeNull();
  });

  it('recomputes only the customer whose usage changed', async () => {
    const before = new Map((await page('?pageSize=10')).items.map((i) => [i.customer.key, i]));
    expect((await c.ingest(events('acc-3', 4))).statusCode).toBe(202);
    const after = await eventually(() => page('?pageSize=10'), (p) => usageOf(p.items.find((i) => i.customer.key === 'acc-3'), 'calls') === '11', 60_000);
    for (const row of after.items) {
      if (row.customer.key === 'acc-3') expect(row.computedAt > before.get('acc-3')!.computedAt).toBe(true);
      else expect(row.computedAt).toBe(before.get(row.customer.key)!.computedAt);
    }
    const fresh = await accountSummaries(deps, ['acc-3'], Date.parse(after.items.find((i) => i.customer.key === 'acc-3')!.computedAt));
    const { computedAt: _c, ...cached } = after.items.find((i) => i.customer.key === 'acc-3')!;
    expect(cached).toEqual(fresh.items[0]);
  });

  it('shows catalog changes: a renamed customer, a new customer, a new subscription', async () => {
    const r = await c.get('/api/v1/customers/acc-4');
    const cust = r.json() as Record<string, unknown>;
    const put = await rt.app!.inject({ method: 'PUT', url: '/api/v1/customers/acc-4', headers: { authorization: `Bearer ${rt.adminKey}`, 'content-type': 'application/json' }, payload: JSON.stringify({ ...cust, name: 'Beta Renamed', createdAt: undefined, key: undefined }) });
    expect(put.statusCode).toBe(200);
    await post('/api/v1/customers', { key: 'acc-6', name: 'Newcomer GmbH', currency: 'USD' });
    await post('/api/v1/subscriptions', { id: 'sub-acc-5', customer: 'acc-5', plan: 'std', start: new Date(monthStart).toISOString() });
    const p = await eventually(
      () => page('?pageSize=10'),
      (x) => x.items.some((i) => i.customer.name === 'Beta Renamed') && x.items.some((i) => i.customer.key === 'acc-6') && x.items.find((i) => i.customer.key === 'acc-5')?.projected !== null,
      60_000,
    );
    expect(p.totalCount).toBe(6);
    expect(p.items.find((i) => i.customer.key === 'acc-5')!.subscriptions.map((s) => s.plan)).toEqual(['std']);
  });

  it('shows an adjustment made through the API at the next refresh', async () => {
    const before = (await page('?q=acc-1')).items[0]!;
    await post('/api/v1/adjustments', { customer: 'acc-1', kind: 'credit', amount: '5.00', reasonCode: 'goodwill' });
    const after = await eventually(() => page('?q=acc-1'), (p) => p.items[0]!.computedAt > before.computedAt, 30_000);
    expect(after.items[0]!.projected!.amountSoFar).toBe(new Decimal(before.projected!.amountSoFar).minus(5).toFixed(2));
  });

  it('prices many customers over shared reads exactly as one by one', async () => {
    const keys = [...customers.map((x) => x.key), 'acc-6'];
    const nowMs = Date.now();
    const pricing = { invoices: new ClickHouseInvoiceStore(rt.store!), adjustments: new ClickHouseAdjustments(rt.store!), rounding: 'half_up' as const, batchFrom: 1 };
    const [batched, single] = await Promise.all([accountSummaries({ ...deps, pricing }, keys, nowMs), accountSummaries(deps, keys, nowMs)]);
    expect(batched.items.filter((i) => i.projected).length).toBe(5); // acc-1 with its credit
    expect(batched).toEqual(single);
  });

  it('pages, sorts and searches on the server', async () => {
    const keys = async (qs: string) => (await page(qs)).items.map((i) => i.customer.key);
    const all = await page('?sort=key&pageSize=1000');
    expect(all.items.map((i) => i.customer.key)).toEqual(['acc-1', 'acc-2', 'acc-3', 'acc-4', 'acc-5', 'acc-6']);
    const p2 = await page('?sort=key&pageSize=2&page=2');
    expect(p2).toMatchObject({ page: 2, pageSize: 2, totalCount: 6 });
    expect(p2.items.map((i) => i.customer.key)).toEqual(['acc-3', 'acc-4']);
    expect(await keys('?sort=key&pageSize=2&page=4')).toEqual([]);
    expect(await keys('?sort=key&order=desc&pageSize=3')).toEqual(['acc-6', 'acc-5', 'acc-4']);
    expect(await keys('?sort=name&pageSize=3')).toEqual(['acc-2', 'acc-4', 'acc-3']); // Alpha, Beta Renamed, Mango
    // Usage and projected totals order as numbers (12 > 11 > 3 > 1), not as text.
    expect(await keys('?sort=usage.calls&order=desc&pageSize=4')).toEqual(['acc-2', 'acc-3', 'acc-1', 'acc-4']);
    const projected = (await page('?sort=projected&order=desc&pageSize=10')).items.filter((i) => i.projected).map((i) => i.projected!.projectedTotal);
    expect(projected.length).toBeGreaterThan(3);
    for (let i = 1; i < projected.length; i++) expect(new Decimal(projected[i - 1]!).gte(projected[i]!)).toBe(true);
    // Search: key or name, any case, with the count of matches.
    const s = await page('?q=ALPHA');
    expect(s.totalCount).toBe(1);
    expect(s.items[0]!.customer.key).toBe('acc-2');
    expect((await page('?q=acc-')).totalCount).toBe(6);
    expect((await page('?q=nobody-here')).items).toEqual([]);
  });

  it('pages, sorts and searches customers and adjustments; invoices come as a page', async () => {
    const cust = (await c.get('/api/v1/customers?sort=name&order=desc&pageSize=2&page=1')).json() as { items: { key: string; name: string }[]; page: number; pageSize: number; totalCount: number };
    expect(cust).toMatchObject({ page: 1, pageSize: 2, totalCount: 6 });
    expect(cust.items.map((x) => x.name)).toEqual(['Zeta Labs', 'No Plan Inc']);
    expect(((await c.get('/api/v1/customers?q=mango')).json() as { items: { key: string }[] }).items.map((x) => x.key)).toEqual(['acc-3']);
    const adj = (await c.get('/api/v1/adjustments?customer=acc-1&q=goodwill')).json() as { items: { kind: string }[]; totalCount: number };
    expect(adj.totalCount).toBe(1);
    expect(adj.items[0]!.kind).toBe('credit');
    const inv = await c.get('/api/v1/invoices?status=finalized&sort=total&order=desc&pageSize=5');
    expect(inv.statusCode).toBe(200);
    expect(inv.json()).toEqual({ items: [], page: 1, pageSize: 5, totalCount: 0 });
    expect((await c.get('/api/v1/invoices?sort=amount')).json()).toMatchObject({ code: 'REQUEST_INVALID' });
    expect((await c.get('/api/v1/customers?pageSize=5000')).statusCode).toBe(400);
  });

  it('refuses bad paging parameters naming the field', async () => {
    const bad = async (qs: string, field: string) => {
      const r = await c.get(`/api/v1/accounts${qs}`);
      expect(r.statusCode).toBe(400);
      expect((r.json() as { message: string }).message).toContain(`query.${field}`);
    };
    await bad('?pageSize=0', 'pageSize');
    await bad('?pageSize=1001', 'pageSize');
    await bad('?page=-1', 'page');
    await bad('?page=x', 'page');
    await bad('?sort=nope', 'sort');
    await bad('?order=up', 'order');
  });
});
