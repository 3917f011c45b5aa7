import { describe, expect, it } from 'vitest';
import { fileByLocalMonth, monthReadRange, type PeriodAggregateRow } from './aggregates.ts';

const row = (customer: string, periodStart: string, amount: string, over: Partial<PeriodAggregateRow> = {}): PeriodAggregateRow => ({
  customer,
  currency: 'USD',
  meter: 'calls',
  kind: 'usage',
  quantity: '10',
  amount,
  amount_minor: String(Math.round(Number(amount) * 100)),
  lines: '1',
  periodStartMs: Date.parse(periodStart),
  ...over,
});
const zones: Record<string, string> = { tokyo: 'Asia/Tokyo', berlin: 'Europe/Berlin', la: 'America/Los_Angeles', kiritimati: 'Pacific/Kiritimati', utc: 'UTC' };
const zoneOf = (c: string) => zones[c] ?? 'UTC';

describe('finance aggregates filed by the customer\'s own month', () => {
  const rows = [
    row('tokyo', '2026-10-31T15:00:00Z', '5'), // 1 November in Tokyo
    row('tokyo', '2026-11-30T15:00:00Z', '7'), // 1 December in Tokyo
    row('berlin', '2026-10-31T23:00:00Z', '3'), // 1 November in Berlin (CET)
    row('kiritimati', '2026-10-31T10:00:00Z', '2'), // 1 November at UTC+14
    row('la', '2026-11-01T07:00:00Z', '4'), // 1 November in Los Angeles (PDT)
    row('la', '2026-12-01T08:00:00Z', '9'), // 1 December in Los Angeles (PST)
    row('utc', '2026-11-01T00:00:00Z', '0.1'),
    row('utc', '2026-11-15T00:00:00Z', '0.2', { quantity: '0.5', lines: '2' }), // a second subscription's period in the same month
  ];

  it('files an invoice east of UTC in its local month, not the UTC month its start falls in', () => {
    const nov = fileByLocalMonth(rows, '2026-11', zoneOf);
    expect(nov.map((r) => [r.customer, r.amount])).toEqual([
      ['berlin', '3'],
      ['kiritimati', '2'],
      ['la', '4'],
      ['tokyo', '5'],
      ['utc', '0.3'],
    ]);
    expect(fileByLocalMonth(rows, '2026-10', zoneOf)).toEqual([]);
    expect(fileByLocalMonth(rows, '2026-12', zoneOf).map((r) => r.customer)).toEqual(['la', 'tokyo']);
  });

  it('sums exactly per customer, currency, meter and kind', () => {
    const utc = fileByLocalMonth(rows, '2026-11', zoneOf).find((r) => r.customer === 'utc')!;
    expect(utc).toEqual({ customer: 'utc', currency: 'USD', meter: 'calls', kind: 'usage', quantity: '10.5', amount: '0.3', amount_minor: '30', lines: '3' });
  });

  it('reads a UTC range wide enough for UTC+14 and UTC-12', () => {
    const { fromMs, toMs } = monthReadRange('2026-11');
    expect(fromMs).toBeLessThanOrEqual(Date.parse('2026-10-31T10:00:00Z'));
    expect(toMs).toBeGreaterThan(Date.parse('2026-12-01T12:00:00Z'));
    expect(new Date(monthReadRange('2026-01').fromMs).toISOString()).toBe('2025-12-31T09:00:00.000Z');
  });
});
