import { describe, expect, it } from 'vitest';
import type { Customer, Plan, Subscription } from './catalog.ts';
import { buildInvoice, usageAmounts, type BuildInput } from './invoice-builder.ts';
import { lineSource, LineKinds, type Invoice } from './invoice-types.ts';

const T = (s: string) => Date.parse(s);
const customer: Customer = { key: 'acme', name: 'Acme', currency: 'USD', timeZone: 'UTC', createdAt: '2026-01-01T00:00:00Z' };
const feb = { start: T('2026-02-01T00:00:00Z'), end: T('2026-03-01T00:00:00Z') };
const march = { start: T('2026-03-01T00:00:00Z'), end: T('2026-04-01T00:00:00Z') };
const april = { start: T('2026-04-01T00:00:00Z'), end: T('2026-05-01T00:00:00Z') };
const plan = (key: string, fee: string, timing: 'advance' | 'arrears', unitPrice: string, extra: Partial<Plan> = {}): Plan => ({
  key,
  name: key,
  currency: 'USD',
  interval: 'month',
  baseFee: { amount: fee, timing },
  charges: [{ key: 'calls', meter: 'api-calls', price: { model: 'per_unit', unitPrice } }],
  createdAt: '2026-01-01T00:00:00Z',
  ...extra,
});
const sub = (phases: Subscription['phases'], extra: Partial<Subscription> = {}): Subscription => ({ id: 'sub_1', customer: 'acme', anchor: '2026-03-01T00:00:00Z', phases, createdAt: '2026-01-01T00:00:00Z', ...extra });

/** Invoices with a line of every kind and key shape the builder makes. */
function invoices(): Invoice[] {
  const base: Omit<BuildInput, 'subscription' | 'plans'> = { invoiceId: 'inv_0123456789abcdef01234567', customer, period: march, firstPeriod: false, usage: {}, cutoffMs: march.end + 3_600_000 };
  const changed = buildInvoice({
    ...base,
    subscription: sub([{ plan: 'small', start: '2026-03-01T00:00:00Z', end: '2026-03-16T00:00:00Z' }, { plan: 'large', start: '2026-03-16T00:00:00Z' }], {
      discounts: [{ type: 'percent', value: '10', charge: 'calls' }, { type: 'amount', value: '1' }],
    }),
    plans: { small: plan('small', '10', 'advance', '0.10'), large: plan('large', '20', 'advance', '0.05', { minimumCommitment: '500' }) },
    firstPeriod: true,
    nextPeriod: april,
    usage: { calls: { quantity: '100' }, 'calls#2': { quantity: '300' } },
    adjustments: [{ id: 'adj_one', description: 'Credit (goodwill)', amount: '-2' }],
    corrections: [{ period: feb, meter: 'api-calls', chargeKey: 'calls#2', quantityDelta: '3', amountDelta: '0.15', breakdown: [] }],
    credits: [{ id: 'adj_grant', amount: '1000', drawn: '0', createdAtMs: 0 }],
  });
  const arrears = buildInvoice({ ...base, subscription: sub([{ plan: 'basic', start: '2026-03-01T00:00:00Z' }]), plans: { basic: plan('basic', '49', 'arrears', '0.01') } });
  return [changed, arrears];
}

describe('line sources', () => {
  const lines = invoices().flatMap((i) => i.lines);

  it('the builder gives every line a source, and lines of every kind are covered here', () => {
    expect(lines.every((l) => l.source !== undefined)).toBe(true);
    expect(new Set(lines.map((l) => l.kind))).toEqual(new Set(LineKinds));
    expect(lines.filter((l) => l.kind === 'discount').map((l) => l.source)).toEqual([
      { kind: 'discount', index: 0, charge: 'calls' },
      { kind: 'discount', index: 0, charge: 'calls#2' },
      { kind: 'discount', index: 1 },
    ]);
  });

  it('a line stored without a source (before it existed) gets the same source from its id', () => {
    for (const l of lines) {
      const { source, ...old } = l;
      expect(lineSource(old), l.id).toEqual(source);
    }
  });

  it('ids keep their shape: <invoice id>:<kind>:<key>', () => {
    expect(lines.map((l) => l.id.replace(/^inv_[0-9a-f]+:/, ''))).toEqual(
      expect.arrayContaining(['usage:calls', 'usage:calls#2', 'discount:line:0:calls', 'discount:line:0:calls#2', 'discount:invoice:1', 'adjustment:adj_one', `correction:calls#2:${feb.start}`, 'credit:adj_grant', 'base_fee:arrears:0']),
    );
  });

  it('usage amounts per charge are the same for a stored invoice without sources', () => {
    const [inv] = invoices();
    const old: Invoice = { ...inv!, lines: inv!.lines.map(({ source: _s, ...l }) => l) };
    expect(usageAmounts(old)).toEqual(usageAmounts(inv!));
    expect([...usageAmounts(inv!).keys()].sort()).toEqual(['(minimum)', 'calls', 'calls#2']);
  });
});
