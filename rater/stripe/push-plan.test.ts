import { describe, expect, it } from 'vitest';
import type { Invoice, InvoiceLine } from '../invoice-types.ts';
import { fromStripeAmount, idempotencyKey, planPush, STRIPE_LIMITS, toStripeAmount } from './push-plan.ts';

const line = (id: string, amountMinor: string, extra: Partial<InvoiceLine> = {}): InvoiceLine => ({
  id,
  kind: 'usage',
  description: `line ${id}`,
  periodStart: '2026-10-01T00:00:00Z',
  periodEnd: '2026-11-01T00:00:00Z',
  quantity: '1',
  amount: '0',
  amountMinor,
  breakdown: [],
  ...extra,
});

const invoice = (lines: InvoiceLine[], extra: Partial<Invoice> = {}): Invoice => ({
  id: 'inv_1',
  number: 'ML-2026-000001',
  customer: 'acme',
  currency: 'USD',
  periodStart: '2026-10-01T00:00:00Z',
  periodEnd: '2026-11-01T00:00:00Z',
  status: 'finalized',
  cutoff: '2026-11-01T00:00:00Z',
  lines,
  total: '0',
  totalMinor: String(lines.reduce((s, l) => s + BigInt(/^-?\d+$/.test(l.amountMinor) ? l.amountMinor : '0'), 0n)),
  ...extra,
});

describe('planPush', () => {
  it('derives every request and key from the invoice', () => {
    const r = planPush(invoice([line('a', '4900', { kind: 'base_fee' }), line('b', '-100', { kind: 'credit', meter: 'calls' })]), 'cus_123');
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.plan.invoice).toEqual({
      params: {
        customer: 'cus_123',
        collection_method: 'send_invoice',
        days_until_due: 30,
        auto_advance: false,
        pending_invoice_items_behavior: 'exclude',
        currency: 'usd',
        metadata: { meterline_invoice_id: 'inv_1', meterline_number: 'ML-2026-000001' },
      },
      idempotencyKey: 'meterline-invoice-inv_1',
    });
    expect(r.plan.items).toEqual([
      {
        lineId: 'a',
        idempotencyKey: 'meterline-line-a',
        params: {
          customer: 'cus_123',
          amount: 4900,
          currency: 'usd',
          description: 'line a',
          period: { start: 1790812800, end: 1793491200 },
          metadata: { meterline_invoice_id: 'inv_1', meterline_line_id: 'a', kind: 'base_fee' },
        },
      },
      expect.objectContaining({ lineId: 'b', params: expect.objectContaining({ amount: -100, metadata: expect.objectContaining({ kind: 'credit', meter: 'calls' }) }) }),
    ]);
    expect(r.plan.finalizeIdempotencyKey).toBe('meterline-finalize-inv_1');
    expect(r.plan.totalMinor).toBe('4800');
    expect(r.plan.stripeTotal).toBe(4800n);
    expect(r.plan.createdGte).toBe(1790812800);
  });

  it('is deterministic: the same invoice plans the same requests', () => {
    const inv = invoice([line('a', '1'), line('b', '2')]);
    expect(planPush(inv, 'cus_1')).toEqual(planPush(structuredClone(inv), 'cus_1'));
  });

  it.each([
    ['a draft invoice', invoice([line('a', '1')], { status: 'draft' }), /only finalized invoices/],
    ['a non-integer amount', invoice([line('a', '1.50')], { totalMinor: '1' }), /"1.50" is not an integer/],
    ['an amount beyond 2^53', invoice([line('a', '9007199254740993')], { totalMinor: '9007199254740993' }), /beyond what Stripe/],
    ['lines that do not add up', invoice([line('a', '100')], { totalMinor: '101' }), /add up to 100 minor units but totalMinor is 101/],
    ['a bad currency', invoice([line('a', '1')], { currency: 'dollars' }), /not a three-letter/],
    ['MGA with a fraction of an ariary (Stripe: zero-decimal)', invoice([line('a', '1250')], { currency: 'MGA' }), /fraction of a unit that Stripe cannot carry in MGA/],
    ['a KWD total not ending in 0', invoice([line('a', '5125')], { currency: 'KWD' }), /does not end in 0/],
    ['a bad period', invoice([line('a', '1', { periodEnd: 'soon' })]), /invalid period/],
    ['an end before the start', invoice([line('a', '1', { periodEnd: '2026-09-01T00:00:00Z' })]), /invalid period/],
    ['duplicate line ids', invoice([line('a', '1'), line('a', '2')]), /appears twice/],
    ['too many lines', invoice(Array.from({ length: 251 }, (_, i) => line(`l${i}`, '1'))), /at most 250 items/],
  ])('refuses %s', (_name, inv, reason) => {
    const r = planPush(inv, 'cus_1');
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.problems.join('; ')).toMatch(reason);
  });

  it('refuses a customer id that is not Stripe’s', () => {
    const r = planPush(invoice([]), 'acme');
    expect(r).toEqual({ ok: false, problems: ['"acme" is not a Stripe customer id (cus_...)'] });
  });

  it('rounds a sub-second period outward to whole seconds', () => {
    const r = planPush(invoice([line('a', '1', { periodStart: '2026-10-01T00:00:00.900Z', periodEnd: '2026-10-01T00:00:01.100Z' })]), 'cus_1');
    expect(r.ok && r.plan.items[0]!.params.period).toEqual({ start: 1790812800, end: 1790812802 });
  });
});

describe('Stripe minor units', () => {
  it.each([
    ['usd', 1234n, 1234n, '1234'],
    ['jpy', 1500n, 1500n, '1500'],
    ['kwd', 5120n, 5120n, '5120'],
    ['isk', 1500n, 150000n, '1500'],
    ['isk', -7n, -700n, '-7'],
    ['mga', 250000n, 2500n, '250000'],
  ])('%s: %s Meterline = %s Stripe', (currency, meterline, stripe, back) => {
    expect(toStripeAmount(meterline, currency)).toBe(stripe);
    expect(fromStripeAmount(stripe, currency)).toBe(back);
  });
  it('says when Stripe cannot carry an amount, and shows a Stripe fraction exactly', () => {
    expect(toStripeAmount(1250n, 'mga')).toBeUndefined();
    expect(fromStripeAmount(150050, 'isk')).toBe('1500.5');
    expect(fromStripeAmount(-150005, 'ISK')).toBe('-1500.05');
  });
  it('plans ISK items in Stripe’s two-decimal form', () => {
    const r = planPush(invoice([line('a', '1500')], { currency: 'ISK' }), 'cus_1');
    expect(r.ok && r.plan.items[0]!.params.amount).toBe(150000);
    expect(r.ok && r.plan.stripeTotal).toBe(150000n);
  });
});

describe('idempotencyKey', () => {
  it('is prefix-id while that fits in 255 characters, a SHA-256 of the id beyond', () => {
    expect(idempotencyKey('meterline-line', 'inv_1:usage:calls')).toBe('meterline-line-inv_1:usage:calls');
    const long = 'x'.repeat(300);
    const key = idempotencyKey('meterline-line', long);
    expect(key).toMatch(/^meterline-line-sha256-[0-9a-f]{64}$/);
    expect(key.length).toBeLessThanOrEqual(STRIPE_LIMITS.idempotencyKeyChars);
    expect(idempotencyKey('meterline-line', long)).toBe(key);
    expect(idempotencyKey('meterline-line', 'y'.repeat(300))).not.toBe(key);
  });
});
