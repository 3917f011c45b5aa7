import { describe, expect, it } from 'vitest';
import type { Customer, Plan, Subscription } from './catalog.ts';
import { buildInvoice } from './invoice-builder.ts';
import { daysBetween } from './periods.ts';

// Day-count proration (`proration: "day"` on a plan): base fees are prorated by whole days in the
// customer's time zone, the day of a change belonging to the plan that starts on it.
const T = (s: string) => Date.parse(s);
const customer = (timeZone = 'UTC'): Customer => ({ key: 'acme', name: 'Acme', currency: 'EUR', timeZone, createdAt: '2025-12-01T00:00:00Z' });
const plan = (key: string, fee: string, timing: 'advance' | 'arrears', proration?: 'second' | 'day'): Plan => ({
  key,
  name: key,
  currency: 'EUR',
  interval: 'month',
  baseFee: { amount: fee, timing },
  charges: [],
  createdAt: '2025-12-01T00:00:00Z',
  ...(proration ? { proration } : {}),
});
const sub = (phases: Subscription['phases'], anchor = '2026-01-01T00:00:00Z'): Subscription => ({ id: 'sub_1', customer: 'acme', anchor, phases, createdAt: '2025-12-01T00:00:00Z' });
const january = { start: T('2026-01-01T00:00:00Z'), end: T('2026-02-01T00:00:00Z') };

function upgradeAt(at: string, proration?: 'second' | 'day', tz = 'UTC', period = january) {
  const s = sub([
    { plan: 'A', start: new Date(period.start).toISOString(), end: at },
    { plan: 'B', start: at },
  ]);
  return buildInvoice({ invoiceId: 'inv', customer: customer(tz), subscription: s, plans: { A: plan('A', '100', 'arrears', proration), B: plan('B', '200', 'arrears', proration) }, period, firstPeriod: false, usage: {}, cutoffMs: period.end });
}

describe('day-count proration', () => {
  // Lago, https://getlago.com/docs/guide/subscriptions/upgrades-downgrades: Plan A (€100/month, in
  // arrears, calendar billing) from January 1st, upgraded to Plan B (€200/month) on January 15th:
  // "Invoice for Plan A: 14 days prorated = €45.16 (14/31 × €100)"; Plan B by the same rule,
  // January 15th-31st = 17 days: 17/31 × €200 = €109.677… → €109.68.
  it("Lago's upgrade example: €45.16 for 14 of 31 days on A, €109.68 for 17 days on B", () => {
    const inv = upgradeAt('2026-01-15T00:00:00Z', 'day');
    expect(inv.lines.map((l) => [l.description, l.amount])).toEqual([
      ['A base fee (prorated)', '45.16'],
      ['B base fee (prorated)', '109.68'],
    ]);
    expect(inv.total).toBe('154.84'); // 45.16 + 109.68
  });

  it('a change in the middle of a day gives the whole day to the new plan; to the second it splits the day', () => {
    // 15:30 on January 15th: by days still 14/31 and 17/31.
    expect(upgradeAt('2026-01-15T15:30:00Z', 'day').lines.map((l) => l.amount)).toEqual(['45.16', '109.68']);
    // To the second: A 14 d 15.5 h = 1,265,400 s of 2,678,400 s → 100 × 0.47244… = 47.24; B the rest 16 d 8.5 h → 200 × 0.52755… = 105.51
    expect(upgradeAt('2026-01-15T15:30:00Z', 'second').lines.map((l) => l.amount)).toEqual(['47.24', '105.51']);
    expect(upgradeAt('2026-01-15T15:30:00Z').lines.map((l) => l.amount)).toEqual(['47.24', '105.51']); // the default is unchanged
  });

  it("counts days in the customer's zone: 03:00 UTC on January 15th is still January 14th in New York", () => {
    const ny = { start: T('2026-01-01T05:00:00Z'), end: T('2026-02-01T05:00:00Z') }; // midnight to midnight, New York
    // A: January 1st-13th = 13 days → 100 × 13/31 = 41.935… → 41.94; B: 18 days → 200 × 18/31 = 116.129… → 116.13
    expect(upgradeAt('2026-01-15T03:00:00Z', 'day', 'America/New_York', ny).lines.map((l) => l.amount)).toEqual(['41.94', '116.13']);
  });

  it('advance fees: credits the unused days of the old plan and charges the remaining days of the new (Lago credits unused days)', () => {
    const s = sub([
      { plan: 'A', start: '2026-01-01T00:00:00Z', end: '2026-01-15T09:00:00Z' },
      { plan: 'B', start: '2026-01-15T09:00:00Z' },
    ]);
    const inv = buildInvoice({ invoiceId: 'inv', customer: customer(), subscription: s, plans: { A: plan('A', '31', 'advance', 'day'), B: plan('B', '62', 'advance', 'day') }, period: january, firstPeriod: false, usage: {}, cutoffMs: january.end });
    // 17 days (15th-31st) unused on A: −31 × 17/31 = −17.00; charged on B: 62 × 17/31 = 34.00
    expect(inv.lines.filter((l) => l.kind === 'proration').map((l) => l.amount)).toEqual(['-17.00', '34.00']);
  });

  it('a month across a clock change still has its calendar days (March in Berlin: 31 days, 743 hours)', () => {
    const start = T('2026-02-28T23:00:00Z');
    const end = T('2026-03-31T22:00:00Z');
    expect((end - start) / 3_600_000).toBe(743);
    expect(daysBetween(start, end, 'Europe/Berlin')).toBe(31);
    expect(daysBetween(start, T('2026-03-29T12:00:00Z'), 'Europe/Berlin')).toBe(28); // the 29th (the change day) is not yet counted
  });
});
