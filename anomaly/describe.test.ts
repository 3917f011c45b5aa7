import { describe, expect, it } from 'vitest';
import { clockTime, formatApprox, formatExact, formatMoney, hoursText, sinceTime } from './describe.ts';

const T = (s: string) => Date.parse(s);

describe('wording', () => {
  it.each<[number, string, string]>([
    [14_213, '14,213', '14,000'],
    [2137, '2,137', '2,100'],
    [287, '287', '290'],
    [0.4444, '0.44', '0.44'],
    [0, '0', '0'],
  ])('%d: exact %s, approximately %s', (x, exact, approx) => {
    expect(formatExact(x)).toBe(exact);
    expect(formatApprox(x)).toBe(approx);
  });

  it('money and hours', () => {
    expect(formatMoney(4820)).toBe('4,820.00');
    expect([hoursText(1), hoursText(5)]).toEqual(['1 hour', '5 hours']);
  });

  it.each<[string, string, string]>([
    ['UTC', '2026-01-09T14:00:00Z', '14:00'],
    ['Europe/Berlin', '2026-01-09T14:00:00Z', '15:00'],
    ['America/New_York', '2026-01-10T04:00:00Z', '23:00'],
    ['Asia/Kolkata', '2026-01-09T14:00:00Z', '19:30'],
  ])('clock time in %s', (zone, at, expected) => {
    expect(clockTime(T(at), zone)).toBe(expected);
  });

  it.each<[string, string, string, string]>([
    ['same day', '2026-01-09T09:00:00Z', '2026-01-09T14:00:00Z', '09:00'],
    ['yesterday', '2026-01-08T21:00:00Z', '2026-01-09T02:00:00Z', 'Thu 21:00'],
    ['days ago', '2026-01-05T09:00:00Z', '2026-01-09T02:00:00Z', 'Mon 09:00'],
    ['over six days ago: with the date', '2026-01-01T09:00:00Z', '2026-01-09T02:00:00Z', 'Thu 1 Jan 09:00'],
  ])('since: %s', (_name, since, until, expected) => {
    expect(sinceTime(T(since), T(until), 'UTC')).toBe(expected);
  });
});
