import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Decimal } from 'decimal.js';
import type { NatsServerHandle } from '../common/nats-server.ts';
import { Leases } from '../common/lease.ts';
import { silentLogger } from '../common/logger.ts';
import { Billing, type Invoice } from '../rater/index.ts';
import { ClickHouseUsageStore } from '../usage/index.ts';
import { client, total } from './api-client.ts';
import { FakeStripe } from './fake-stripe.ts';
import { ce, eventually, cutoffClock, startTestNats, startTestRuntime, testConfig, type TestRuntime } from './harness.ts';

/**
 * Billing close end to end on real NATS and ClickHouse: events (some ingested before the
 * period's cutoff, some after), the close, the same close twice, two schedulers racing, a plan
 * change mid-period, and the late events billed once, as a correction on the next invoice.
 *
 * The cutoff of a period is its end plus the grace period. To put a real cutoff between two
 * ingestion batches, the test builds Billing services whose grace ends exactly between them.
 */
const SEP = Date.UTC(2026, 8, 1);
const OCT = Date.UTC(2026, 9, 1);
const NOV = Date.UTC(2026, 10, 1);
const DAY = 86_400_000;

describe('billing close', () => {
  let nats: NatsServerHandle;
  let stripe: FakeStripe;
  let stripeCustomer = '';
  let rt: TestRuntime;
  let c: ReturnType<typeof client>;
  let cutA = 0; // between batch A (before the September cutoff) and batch B (after it)
  const clock = cutoffClock(); // the processor's: stamps ingested_at
  const sepCalls = { a: 0, b: 0 };

  const billingWith = async (graceMs: number, holder: string) =>
    new Billing({
      store: rt.store!,
      usage: new ClickHouseUsageStore({ store: rt.store! }),
      meters: rt.catalog.meters,
      customers: rt.catalog.customers,
      plans: rt.catalog.plans,
      subscriptions: rt.catalog.subscriptions,
      kv: rt.nats.kv,
      leases: await Leases.open(rt.nats.js, { holder }),
      logger: silentLogger(),
      options: { graceMs, rounding: 'half_up', numberPrefix: 'T', safetyMs: 0 },
    });

  beforeAll(async () => {
    nats = await startTestNats();
    stripe = await FakeStripe.start();
    stripeCustomer = stripe.createCustomer();
    rt = await startTestRuntime(testConfig(nats.url, { INGEST_MAX_PAST: '400d', BILLING_SCHEDULE: '0 0 1 1 *', STRIPE_API_KEY: 'sk_test_meterline', STRIPE_API_BASE: stripe.url }), undefined, { now: clock.now });
    c = client(rt.app!, rt.adminKey);
    await c.createMeter({ slug: 'api-calls', eventType: 'call', aggregation: 'COUNT' });
    await c.createMeter({ slug: 'tokens', eventType: 'call', aggregation: 'SUM', valueProperty: '$.tokens' });
    const post = async (url: string, body: unknown) => {
      const r = await c.post(url, body);
      if (r.statusCode >= 300) throw new Error(`${url}: ${r.statusCode} ${r.body}`);
      return r.json();
    };
    await post('/api/v1/customers', { key: 'acme', name: 'Acme Inc', currency: 'USD', timeZone: 'UTC', stripeCustomerId: stripeCustomer });
    const graduated = { model: 'graduated', tiers: [{ upTo: '100', unitPrice: '0.10' }, { upTo: null, unitPrice: '0.05', flatFee: '1' }] };
    await post('/api/v1/plans', { key: 'pro', name: 'Pro', currency: 'USD', interval: 'month', baseFee: { amount: '30', timing: 'advance' }, charges: [{ key: 'calls', meter: 'api-calls', price: graduated }, { key: 'tokens', meter: 'tokens', price: { model: 'per_unit', unitPrice: '0.001' } }] });
    await post('/api/v1/plans', { key: 'pro-plus', name: 'Pro Plus', currency: 'USD', interval: 'month', baseFee: { amount: '60', timing: 'advance' }, charges: [{ key: 'calls', meter: 'api-calls', price: { model: 'per_unit', unitPrice: '0.02' } }, { key: 'tokens', meter: 'tokens', price: { model: 'per_unit', unitPrice: '0.001' } }] });
    await post('/api/v1/subscriptions', { id: 'sub-acme', customer: 'acme', plan: 'pro', start: new Date(SEP).toISOString() });
    // Upgrade on September 16 at 00:00 (15 of 30 days in).
    await post('/api/v1/subscriptions/sub-acme/change-plan', { plan: 'pro-plus', effectiveAt: new Date(SEP + 15 * DAY).toISOString() });

    const ev = (id: string, t: number, tokens: string) => ce({ id, type: 'call', subject: 'acme', time: new Date(t).toISOString(), data: { tokens } });
    // Batch A: 150 calls before the upgrade, 40 after; tokens 1.5 each.
    const a = [...Array.from({ length: 150 }, (_, i) => ev(`a-${i}`, SEP + i * 3_600_000, '1.5')), ...Array.from({ length: 40 }, (_, i) => ev(`a2-${i}`, SEP + 16 * DAY + i * 3_600_000, '1.5'))];
    sepCalls.a = a.length;
    expect((await c.ingest(a)).statusCode).toBe(202);
    await eventually(() => total(c, 'api-calls', 'acme'), (v) => v === String(a.length));
    cutA = clock.cut(); // batch B is stamped after the cutoff
    // Batch B: late September usage ingested after the cutoff (10 calls before the upgrade).
    const b = Array.from({ length: 10 }, (_, i) => ev(`b-${i}`, SEP + 2 * DAY + i * 60_000, '2'));
    sepCalls.b = b.length;
    expect((await c.ingest(b)).statusCode).toBe(202);
    // October usage (on pro-plus), ingested now.
    const oct = Array.from({ length: 25 }, (_, i) => ev(`o-${i}`, OCT + i * 3_600_000, '4'));
    expect((await c.ingest(oct)).statusCode).toBe(202);
    await eventually(() => total(c, 'api-calls', 'acme'), (v) => v === String(a.length + b.length + oct.length));
  }, 120_000);
  afterAll(async () => {
    await rt?.stop();
    await nats?.stop();
    await stripe?.close();
  });

  const line = (inv: Invoice, kind: string, idPart = '') => inv.lines.filter((l) => l.kind === kind && l.id.includes(idPart));

  let september: Invoice;

  it('finalizes September at its cutoff: prorated fees, usage under the plan in force, exact totals', async () => {
    const billing = await billingWith(cutA - OCT, 'scheduler-1');
    const r = await billing.closeByHand('2026-09', { dryRun: false, nowMs: Date.now() });
    expect(r.invoices).toHaveLength(1);
    september = r.invoices[0]!;
    expect(september.status).toBe('finalized');
    expect(september.number).toMatch(/^T-2026-\d{6}$/);
    // Advance fee: first period (Pro, $30), then the upgrade on the 16th: credit 15/30 of $30, charge 15/30 of $60.
    expect(line(september, 'base_fee').map((l) => [l.description, l.amount])).toEqual([
      ['Pro base fee, in advance', '30.00'],
      ['Pro Plus base fee, in advance for the next period', '60.00'],
    ]);
    expect(line(september, 'proration').map((l) => l.amount)).toEqual(['-15.00', '30.00']);
    // Calls before the upgrade (batch A only: 150) on the graduated price: 100 × 0.10 + 50 × 0.05 + 1 = 13.50.
    const calls = line(september, 'usage', ':usage:calls');
    expect(calls.map((l) => [l.quantity, l.amount])).toEqual([
      ['150', '13.50'],
      ['40', '0.80'], // after the upgrade, per unit 0.02
    ]);
    expect(calls[0]!.breakdown.map((b) => [b.units, b.unitPrice, b.flatFee ?? null])).toEqual([
      ['100', '0.10', null], // the unit price as the plan states it
      ['50', '0.05', '1'],
    ]);
    // Tokens are priced the same on both plans: one line over the whole period (190 × 1.5 × 0.001).
    expect(line(september, 'usage', ':usage:tokens').map((l) => [l.quantity, l.amount])).toEqual([['285', '0.29']]);
    const sum = september.lines.reduce((acc, l) => acc.plus(l.amount), new Decimal(0));
    expect(september.total).toBe(sum.toFixed(2));
    expect(september.total).toBe('119.59');
  });

  it('closing the same period again gives the same invoice, and a dry run reproduces it', async () => {
    const billing = await billingWith(cutA - OCT, 'scheduler-1');
    const again = await billing.closeByHand('2026-09', { dryRun: false, nowMs: Date.now() });
    expect(again.invoices[0]).toEqual(september);
    const preview = await billing.closeByHand('2026-09', { dryRun: true, nowMs: Date.now() });
    expect(preview.invoices[0]!.lines).toEqual(september.lines);
    expect(preview.invoices[0]!.total).toBe(september.total);
    const r = await c.get(`/api/v1/invoices/${september.id}`);
    expect(r.statusCode).toBe(200);
    expect((r.json() as Invoice).lines).toEqual(september.lines);
  });

  it('two schedulers racing run one close per period', async () => {
    // October's cutoff is now: both schedulers see it due at the same moment.
    const now = Date.now() + 1;
    const s1 = await billingWith(now - 1 - NOV, 'scheduler-a');
    const s2 = await billingWith(now - 1 - NOV, 'scheduler-b');
    const [r1, r2] = await Promise.all([s1.runDue(now), s2.runDue(now)]);
    expect([r1.ran, r2.ran].filter(Boolean).length).toBeGreaterThanOrEqual(1);
    const made = [...r1.finalized, ...r2.finalized];
    expect(made.map((i) => i.periodStart)).toEqual([new Date(OCT).toISOString()]);
    const list = await c.get('/api/v1/invoices?customer=acme&status=finalized');
    expect((list.json() as { items: Invoice[] }).items.map((i) => i.periodStart)).toEqual([new Date(SEP).toISOString(), new Date(OCT).toISOString()]);
  });

  it('late September events are billed once, as a correction on October: never on both, never on neither', async () => {
    const [october] = (await (await billingWith(0, 'reader')).finalized({ customer: 'acme', periodFromMs: OCT, periodToMs: NOV })).map((s) => s.invoice);
    expect(october).toBeDefined();
    const corr = october!.lines.filter((l) => l.kind === 'correction');
    // Batch B: 10 calls before the upgrade. Calls: 160 × graduated (100 × 0.10 + 60 × 0.05 + 1 = 14.00) less 13.50 billed = 0.50.
    // Tokens: 285 + 20 = 305 × 0.001 = 0.305 -> 0.31, less 0.29 billed = 0.02.
    expect(corr.map((l) => [l.periodStart, l.quantity, l.amount])).toEqual([
      [new Date(SEP).toISOString(), '10', '0.50'],
      [new Date(SEP).toISOString(), '20', '0.02'],
    ]);
    // October's own usage: 25 calls at 0.02.
    expect(october!.lines.filter((l) => l.kind === 'usage' && l.id.includes(':usage:calls')).map((l) => [l.quantity, l.amount])).toEqual([['25', '0.50']]);
    // Every September call is billed exactly once across the two invoices.
    const billedCalls = Number(september.lines.filter((l) => l.kind === 'usage' && l.id.includes(':usage:calls')).reduce((a, l) => a + Number(l.quantity), 0)) + Number(corr[0]!.quantity);
    expect(billedCalls).toBe(sepCalls.a + sepCalls.b);
    // A later close does not bill them again.
    const later = await billingWith(Date.now() - NOV, 'scheduler-c');
    const preview = await later.closeByHand('2026-10', { dryRun: true, nowMs: Date.now() });
    expect(preview.invoices[0]!.lines.filter((l) => l.kind === 'correction')).toEqual(corr);
  });

  it('finance exports: aggregates and invoice CSV', async () => {
    const agg = await c.get('/api/v1/billing/aggregates?period=2026-09');
    expect(agg.statusCode).toBe(200);
    const rows = (agg.json() as { rows: { customer: string; kind: string; meter: string; quantity: string; amount: string }[] }).rows;
    const usage = rows.filter((r) => r.kind === 'usage');
    expect(usage.find((r) => r.meter === 'api-calls')).toMatchObject({ customer: 'acme', quantity: '190', amount: '14.3' });
    const csv = await c.get(`/api/v1/invoices/${september.id}?format=csv`);
    expect(csv.headers['content-type']).toMatch(/text\/csv/);
    expect(csv.body.split('\r\n')[0]).toContain('invoice_id,number,status');
    expect(csv.body.trim().split('\r\n')).toHaveLength(september.lines.length + 1);
  });

  it('pushes finalized invoices to Stripe once: items with idempotency keys from line ids, totals equal', async () => {
    const sync = rt.invoiceSync!;
    const first = await sync.run();
    expect(first).toEqual({ synced: 2, failed: 0, skipped: 0 });
    const invoices = stripe.invoices();
    expect(invoices).toHaveLength(2);
    const sep = invoices.find((i) => i.metadata.meterline_invoice_id === september.id)!;
    expect(sep.total).toBe(Number(september.totalMinor));
    expect(sep.currency).toBe('usd');
    expect(sep.status).toBe('open');
    const items = stripe.invoiceItems().filter((i) => i.invoice === sep.id);
    expect(items.map((i) => i.amount).sort()).toEqual(september.lines.map((l) => Number(l.amountMinor)).sort());
    const keys = stripe.handled('POST', '/v1/invoiceitems').map((r) => r.idempotencyKey);
    for (const l of september.lines) expect(keys).toContain(`meterline-line-${l.id}`);
    // A second run pushes nothing; the status says synced.
    const before = stripe.requests.filter((r) => r.method === 'POST').length;
    expect(await sync.run()).toEqual({ synced: 0, failed: 0, skipped: 0 });
    expect(stripe.requests.filter((r) => r.method === 'POST').length).toBe(before);
    const r = await c.get(`/api/v1/invoices/${september.id}`);
    expect((r.json() as { stripe: { status: string; stripeInvoiceId: string } }).stripe).toMatchObject({ status: 'synced', stripeInvoiceId: sep.id });
    // Reconciliation finds nothing until Stripe's total is changed behind our back.
    expect(((await c.get('/api/v1/billing/stripe/reconcile')).json() as { mismatches: unknown[] }).mismatches).toEqual([]);
    stripe.tamperInvoice(sep.id, { total: sep.total + 100 });
    const mism = (await c.get('/api/v1/billing/stripe/reconcile')).json() as { mismatches: { meterlineInvoiceId: string; differenceMinor: string }[] };
    expect(mism.mismatches.map((m) => [m.meterlineInvoiceId, m.differenceMinor])).toEqual([[september.id, '100']]);
  });

  it('adjustments are append-only, carry the acting key, and land on the next invoice only', async () => {
    const post = async (body: unknown) => c.post('/api/v1/adjustments', body);
    expect((await post({ customer: 'acme', kind: 'credit', amount: '5.00', reasonCode: 'goodwill', note: 'outage on Nov 3' })).statusCode).toBe(201);
    expect((await post({ customer: 'acme', kind: 'credit_grant', amount: '1000', reasonCode: 'prepaid', expiresAt: '2027-12-31T00:00:00Z' })).statusCode).toBe(201);
    const bad = await post({ customer: 'acme', kind: 'usage_correction', meter: 'api-calls', reasonCode: 'dup' });
    expect(bad.statusCode).toBe(400);
    expect(bad.json()).toMatchObject({ code: 'REQUEST_INVALID' });
    const list = (await c.get('/api/v1/adjustments?customer=acme')).json() as { items: { kind: string; actor: string; reasonCode: string }[] };
    expect(list.items.map((a) => [a.kind, a.reasonCode])).toEqual([
      ['credit', 'goodwill'],
      ['credit_grant', 'prepaid'],
    ]);
    expect(list.items.every((a) => a.actor.length > 0 && a.actor !== 'unknown')).toBe(true);
    // Finalized invoices do not change; the next period's preview carries the credit, then draws the grant to zero.
    const billing = await billingWith(0, 'reader-2');
    const [sepAgain] = await billing.finalized({ id: september.id });
    expect(sepAgain!.invoice).toEqual(september);
    // The period open now (the adjustments were made now, so they belong to its invoice, whatever today's date).
    const nov = await billing.closeByHand(new Date().toISOString().slice(0, 7), { dryRun: true, nowMs: Date.now() });
    const lines = nov.invoices[0]!.lines;
    expect(lines.filter((l) => l.kind === 'adjustment').map((l) => l.amount)).toEqual(['-5.00']);
    expect(lines.filter((l) => l.kind === 'credit')).toHaveLength(1);
    expect(nov.invoices[0]!.total).toBe('0.00');
  });
});
