import { tzOffsetMinutes } from '../usage/index.ts';
import { Intervals, type Interval } from './contracts.ts';

/**
 * Billing periods, cut in the customer's time zone. Pure.
 *
 * A subscription's periods repeat every `interval` (1, 3 or 12 months) from its anchor, a
 * local date-time in the customer's zone: an anchor of Jan 31 gives Feb 28 (or 29), Mar 31,
 * Apr 30, ... (the anchor's day, clamped to the month's length, as Stripe does). Periods are
 * half-open [start, end) instants; their length in seconds varies with the month and with DST.
 */
export { Intervals, type Interval } from './contracts.ts';

export interface Period {
  start: number;
  end: number;
}

interface LocalParts {
  y: number;
  m: number; // 0-11
  d: number;
  hh: number;
  mm: number;
  ss: number;
}

/** The wall-clock parts of instant `ms` in `tz`. */
export function localParts(ms: number, tz: string): LocalParts {
  const t = ms + tzOffsetMinutes(tz, ms) * 60_000;
  const d = new Date(t);
  return { y: d.getUTCFullYear(), m: d.getUTCMonth(), d: d.getUTCDate(), hh: d.getUTCHours(), mm: d.getUTCMinutes(), ss: d.getUTCSeconds() };
}

/** The instant at which `tz` shows the given wall-clock time (the later one in a DST gap/overlap rule: first valid instant). */
export function fromLocal(p: LocalParts, tz: string): number {
  const asUtc = Date.UTC(p.y, p.m, p.d, p.hh, p.mm, p.ss);
  // Two passes converge for every real zone (the offset at the guess, then at the corrected guess).
  let guess = asUtc - tzOffsetMinutes(tz, asUtc) * 60_000;
  guess = asUtc - tzOffsetMinutes(tz, guess) * 60_000;
  return guess;
}

function daysInMonth(y: number, m: number): number {
  return new Date(Date.UTC(y, m + 1, 0)).getUTCDate();
}

/** The k-th period boundary after the anchor (k may be negative). */
export function boundary(anchorMs: number, interval: Interval, k: number, tz: string): number {
  const a = localParts(anchorMs, tz);
  const months = a.m + k * Intervals[interval];
  const y = a.y + Math.floor(months / 12);
  const m = ((months % 12) + 12) % 12;
  return fromLocal({ ...a, y, m, d: Math.min(a.d, daysInMonth(y, m)) }, tz);
}

/** The period containing instant `ms`. */
export function periodAt(anchorMs: number, interval: Interval, ms: number, tz: string): Period {
  // Estimate k from the average month, then step to the exact period.
  let k = Math.floor((ms - anchorMs) / (Intervals[interval] * 30.436875 * 86_400_000));
  while (boundary(anchorMs, interval, k, tz) > ms) k--;
  while (boundary(anchorMs, interval, k + 1, tz) <= ms) k++;
  return { start: boundary(anchorMs, interval, k, tz), end: boundary(anchorMs, interval, k + 1, tz) };
}

/** Periods overlapping [fromMs, toMs), in order. */
export function periodsBetween(anchorMs: number, interval: Interval, fromMs: number, toMs: number, tz: string): Period[] {
  const out: Period[] = [];
  let p = periodAt(anchorMs, interval, fromMs, tz);
  while (p.start < toMs) {
    out.push(p);
    p = { start: p.end, end: periodAt(anchorMs, interval, p.end, tz).end };
  }
  return out;
}

/** Overlap of two half-open ranges, or undefined. */
export function overlap(a: Period, b: Period): Period | undefined {
  const start = Math.max(a.start, b.start);
  const end = Math.min(a.end, b.end);
  return start < end ? { start, end } : undefined;
}

/**
 * Whole local calendar days in [fromMs, toMs) in `tz`, counted by the day each instant falls on:
 * a range that starts or ends mid-day counts the day it starts on and not the day it ends on, so
 * the day of a plan change belongs to the plan that starts that day and consecutive ranges add up
 * to the period's days (day-count proration, `proration: "day"`). DST does not change a count.
 */
export function daysBetween(fromMs: number, toMs: number, tz: string): number {
  const day = (ms: number) => {
    const p = localParts(ms, tz);
    return Date.UTC(p.y, p.m, p.d) / 86_400_000;
  };
  return day(toMs) - day(fromMs);
}
