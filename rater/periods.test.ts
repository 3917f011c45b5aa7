import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { boundary, periodAt, periodsBetween } from './periods.ts';

const iso = (ms: number) => new Date(ms).toISOString();

describe('billing periods', () => {
  it.each([
    ['monthly from Jan 31 clamps to the month end', '2026-01-31T00:00:00Z', 'month', 'UTC', ['2026-01-31', '2026-02-28', '2026-03-31', '2026-04-30', '2026-05-31']],
    ['leap year February', '2028-01-30T00:00:00Z', 'month', 'UTC', ['2028-01-30', '2028-02-29', '2028-03-30', '2028-04-30', '2028-05-30']],
    ['quarterly', '2026-01-15T00:00:00Z', 'quarter', 'UTC', ['2026-01-15', '2026-04-15', '2026-07-15', '2026-10-15', '2027-01-15']],
    ['yearly from Feb 29', '2028-02-29T00:00:00Z', 'year', 'UTC', ['2028-02-29', '2029-02-28', '2030-02-28', '2031-02-28', '2032-02-29']],
  ] as const)('%s', (_name, anchor, interval, tz, days) => {
    const a = Date.parse(anchor);
    expect([0, 1, 2, 3, 4].map((k) => iso(boundary(a, interval, k, tz)).slice(0, 10))).toEqual(days);
  });

  it('cuts periods at local midnight in the customer zone, across DST', () => {
    const anchor = Date.parse('2026-01-01T05:00:00Z'); // midnight in New York (EST)
    const ps = periodsBetween(anchor, 'month', Date.parse('2026-02-15T00:00:00Z'), Date.parse('2026-05-01T00:00:00Z'), 'America/New_York');
    expect(ps.map((p) => [iso(p.start), iso(p.end)])).toEqual([
      ['2026-02-01T05:00:00.000Z', '2026-03-01T05:00:00.000Z'],
      ['2026-03-01T05:00:00.000Z', '2026-04-01T04:00:00.000Z'], // DST starts March 8: 743 hours
      ['2026-04-01T04:00:00.000Z', '2026-05-01T04:00:00.000Z'],
    ]);
  });

  it('Asia/Kolkata (+05:30) months start at local midnight', () => {
    const anchor = Date.parse('2026-01-01T00:00:00+05:30');
    const p = periodAt(anchor, 'month', Date.parse('2026-03-10T00:00:00Z'), 'Asia/Kolkata');
    expect([iso(p.start), iso(p.end)]).toEqual(['2026-02-28T18:30:00.000Z', '2026-03-31T18:30:00.000Z']);
  });

  it('property: the period at t contains t, and consecutive periods tile time', () => {
    const zones = ['UTC', 'Europe/Berlin', 'America/New_York', 'Australia/Sydney', 'Asia/Kolkata'];
    const intervals = ['month', 'quarter', 'year'] as const;
    fc.assert(
      fc.property(
        fc.integer({ min: Date.UTC(2020, 0, 1), max: Date.UTC(2030, 0, 1) }),
        fc.integer({ min: 0, max: 3 * 365 * 86_400_000 }),
        fc.constantFrom(...zones),
        fc.constantFrom(...intervals),
        (anchor, offset, tz, interval) => {
          const t = anchor + offset;
          const p = periodAt(anchor, interval, t, tz);
          expect(p.start).toBeLessThanOrEqual(t);
          expect(t).toBeLessThan(p.end);
          const next = periodAt(anchor, interval, p.end, tz);
          expect(next.start).toBe(p.end);
        },
      ),
      { numRuns: 300 },
    );
  });
});
