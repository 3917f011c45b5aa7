import { describe, expect, it } from 'vitest';
import { offsetMinutesAt } from './clock.ts';
import { detect, HOUR_MS, HOURS_PER_WEEK } from './detect.ts';
import { DEFAULT_DETECTOR_PARAMS as P, type Detection } from './types.ts';

// The behaviours of issue 13, one table row each: what a realistic customer does that is normal,
// and the anomalies that must still be found.

const MONDAY = Date.UTC(2026, 8, 14); // Monday 14 September 2026, 00:00 UTC; Europe moves back on 25 October
const BERLIN = { unit: 'API calls', timeZone: 'Europe/Berlin' };
const UTC = { unit: 'API calls', timeZone: 'UTC' };

/** Seeded uniform [0, 1) (mulberry32). */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Local hour of the day and weekday (0 = Sunday) of UTC hour `t` from MONDAY in `timeZone`. */
function local(t: number, timeZone: string): { hour: number; dow: number } {
  const ms = MONDAY + t * HOUR_MS + offsetMinutesAt(timeZone, MONDAY + t * HOUR_MS) * 60_000;
  const d = new Date(ms);
  return { hour: d.getUTCHours(), dow: d.getUTCDay() };
}

/** Office hours 09-18 local time on weekdays at `peak`, 5 % at night, weekends 30 %, ±5 % deterministic noise. */
function officeLocal(hours: number, peak: number, timeZone: string): number[] {
  const r = rng(7);
  return Array.from({ length: hours }, (_, t) => {
    const { hour, dow } = local(t, timeZone);
    const day = hour >= 9 && hour < 18 ? 1 : 0.05;
    const weekend = dow === 0 || dow === 6 ? 0.3 : 1;
    return Math.round(peak * day * weekend * (0.95 + 0.1 * r()));
  });
}

/** Every detection of an hourly replay over [from, to), as [hour, kind]. */
function replay(values: number[], from: number, to: number, describe = BERLIN): Array<[number, Detection['kind']]> {
  const out: Array<[number, Detection['kind']]> = [];
  for (let t = from; t < to; t++) for (const d of detect({ startMs: MONDAY, values: values.slice(0, t + 1) }, P, describe)) out.push([t, d.kind]);
  return out;
}

/** Runs of consecutive hours with a detection of one kind: what the scan turns into alerts. */
function episodes(hits: Array<[number, string]>): number {
  let n = 0;
  for (let i = 0; i < hits.length; i++) if (i === 0 || hits[i]![0] !== hits[i - 1]![0] + 1 || hits[i]![1] !== hits[i - 1]![1]) n++;
  return n;
}

describe('detect on realistic behaviours (issue 13)', () => {
  it('a DST week: a Berlin office customer is judged by its local hour, so the week after the clock change is quiet (by UTC hour it alerts)', () => {
    const change = (Date.UTC(2026, 9, 25, 1) - MONDAY) / HOUR_MS;
    const v = officeLocal(change + HOURS_PER_WEEK, 2000, 'Europe/Berlin');
    expect(replay(v, change, change + HOURS_PER_WEEK)).toEqual([]);
    expect(replay(v, change, change + HOURS_PER_WEEK, UTC).length).toBeGreaterThan(0);
  });

  it('a step change (×2.5 for good) alerts once at most, is the new normal within a day, and a 5× spike two days later is still found', () => {
    const r = rng(3);
    const step = 6 * HOURS_PER_WEEK + 10;
    const v = Array.from({ length: step + 72 }, (_, t) => Math.round(1000 * (t >= step ? 2.5 : 1) * (0.93 + 0.14 * r())));
    const hits = replay(v, step, step + 72, UTC);
    expect(episodes(hits)).toBeLessThanOrEqual(1);
    expect(hits.filter(([t]) => t >= step + 24)).toEqual([]);
    v[step + 60] = 5 * 2500;
    expect(replay(v, step + 60, step + 61, UTC)).toEqual([[step + 60, 'spike']]);
  });

  describe('a nightly batch run (02:00 UTC, ~1,500 events, nothing else)', () => {
    const run = (t: number) => (t % 24 === 2 ? 1400 + ((t * 37) % 200) : 0);
    const judged = 6 * HOURS_PER_WEEK + 2 * 24 + 2;
    const base = () => Array.from({ length: judged + 1 }, (_, t) => run(t));
    it('as usual: nothing', () => {
      expect(replay(base(), judged, judged + 1, UTC)).toEqual([]);
    });
    it('missed (after a silent night): a gap of that one hour', () => {
      const v = base();
      v[judged] = 0;
      const [d] = detect({ startMs: MONDAY, values: v }, P, UTC);
      expect(d).toMatchObject({ kind: 'gap', score: 1, windowStartMs: MONDAY + judged * HOUR_MS });
    });
    it('overrunning into the next hour by a few minutes: nothing', () => {
      const v = [...base(), 0];
      v[judged + 1] = 120;
      v[judged] = v[judged]! - 120;
      expect(replay(v, judged, judged + 2, UTC)).toEqual([]);
    });
  });

  describe('a cron job is judged per run, not per hour (02:30 UTC, ~45 min: its events split over two hours)', () => {
    // First hour 70-80 % of the run's ~1,000 events, the rest in the next hour, as the run's length varies.
    const first = (t: number) => 700 + ((t * 53) % 100);
    const run = (t: number) => (t % 24 === 2 ? first(t) : t % 24 === 3 ? 1000 - first(t - 1) : 0);
    const judged = 6 * HOURS_PER_WEEK + 2 * 24 + 3;
    const base = () => Array.from({ length: judged + 1 }, (_, t) => run(t));
    it('a shorter overrun (the run ended at 03:02, its total as usual): no drop at 03:00', () => {
      const v = base();
      v[judged - 1] = 970;
      v[judged] = 30;
      expect(replay(v, judged - 1, judged + 1, UTC)).toEqual([]);
    });
    it('a missed run of ~150 events (below the one-hour outage bar), silent: found as a drop of the run', () => {
      const small = Array.from({ length: judged }, (_, t) => (t % 24 === 2 ? 140 + ((t * 7) % 20) : 0));
      small[judged - 1] = 0;
      const [d] = detect({ startMs: MONDAY, values: small }, P, UTC);
      expect(d).toMatchObject({ kind: 'drop', observed: 0 });
    });
  });

  it('a bursty low-volume customer (clumps of ~20 events, 0.3 clumps an office hour) stays quiet for a week', () => {
    const r = rng(11);
    const hours = 7 * HOURS_PER_WEEK;
    const v = Array.from({ length: hours }, (_, t) => {
      const { hour, dow } = local(t, 'UTC');
      const rate = hour >= 9 && hour < 18 && dow !== 0 && dow !== 6 ? 0.3 : 0.03;
      let x = 0;
      for (let k = 0; k < 6; k++) if (r() < rate / 6) x += 1 + Math.floor(Math.log(r()) / Math.log(1 - 1 / 20)); // geometric, mean 20
      return x;
    });
    expect(replay(v, hours - HOURS_PER_WEEK, hours, UTC)).toEqual([]);
  });

  it('a slow leak (+10 %/day for a week) is raised once usage has nearly doubled; steady growth is not', () => {
    const r = rng(5);
    const start = 5 * HOURS_PER_WEEK;
    const hours = start + 7 * 24;
    const leak = Array.from({ length: hours }, (_, t) => Math.round(1000 * 1.1 ** (Math.max(0, t - start) / 24) * (0.95 + 0.1 * r())));
    const hits = replay(leak, start, hours, UTC);
    expect(hits.filter(([t]) => t < start + 4 * 24)).toEqual([]);
    expect(hits.map(([, k]) => k)).toContain('spike');
    const growth = Array.from({ length: hours }, (_, t) => Math.round(1000 * 1.03 ** (t / 168) * (0.95 + 0.1 * r())));
    expect(replay(growth, start, hours, UTC)).toEqual([]);
  });

  it('a one-hour total outage of a busy customer is a gap at once', () => {
    const v = officeLocal(6 * HOURS_PER_WEEK + 2 * 24 + 12, 3000, 'Europe/Berlin');
    v[v.length - 1] = 0;
    expect(detect({ startMs: MONDAY, values: v }, P, BERLIN).map((d) => [d.kind, d.score])).toEqual([['gap', 1]]);
  });

  it('a quiet weekday that looks like a Sunday (a holiday) raises no drop, a real drop to 15 % at midday does', () => {
    const wed = 6 * HOURS_PER_WEEK + 2 * 24 - 1; // Wednesday 28 October, local midnight in Berlin (UTC+1 since the 25th)
    const v = officeLocal(wed + 24, 2000, 'Europe/Berlin');
    const holiday = v.map((x, t) => (t >= wed ? Math.round(x * 0.3) : x));
    expect(replay(holiday, wed, wed + 24)).toEqual([]);
    const drop = v.map((x, t) => (t >= wed + 12 ? Math.round(x * 0.15) : x));
    expect(replay(drop, wed + 12, wed + 14).map(([, k]) => k)).toContain('drop');
  });
});
