import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { billShock, detect, historyHours, HOUR_MS, HOURS_PER_WEEK, recentLevel, stabilised, thresholdCrossings } from './detect.ts';
import { DEFAULT_DETECTOR_PARAMS, type Detection, type DetectorParams } from './types.ts';

const P = DEFAULT_DETECTOR_PARAMS;
const MONDAY = Date.UTC(2026, 0, 5); // Monday 00:00 UTC
const UTC = { unit: 'API calls', timeZone: 'UTC' };

/** Office hours in UTC: 09:00-18:00 on weekdays at `peak`, nights at 5 %, weekends at 30 %. */
function office(hourOfWeek: number, peak: number): number {
  const hour = hourOfWeek % 24;
  const weekend = hourOfWeek >= 5 * 24;
  const day = hour >= 9 && hour < 18 ? 1 : 0.05;
  return peak * day * (weekend ? 0.3 : 1);
}

/** `hours` values of f(hour of week, t), starting Monday 00:00. */
function series(hours: number, f: (hourOfWeek: number, t: number) => number): number[] {
  return Array.from({ length: hours }, (_, t) => f(t % HOURS_PER_WEEK, t));
}

/** Deterministic ±`amp` multiplicative wobble, so baselines are not exactly flat. */
const wobble = (t: number, amp: number) => 1 + amp * Math.sin(t * 2.3 + Math.cos(t * 0.7));

const kinds = (ds: Detection[]) => ds.map((d) => d.kind);
const run = (values: number[], params: DetectorParams = P, describe = UTC) => detect({ startMs: MONDAY, values }, params, describe);

// Five weeks of history; the judged hour is Friday of week 6 at 13:00-14:00 UTC (office hours).
const JUDGED = 5 * HOURS_PER_WEEK + 4 * 24 + 13;

describe('detect: table', () => {
  const base = (t: number) => Math.round(office(t % HOURS_PER_WEEK, 2100) * wobble(t, 0.05));
  const withLast = (fn: (v: number[]) => void) => {
    const v = series(JUDGED + 1, (_h, t) => base(t));
    fn(v);
    return v;
  };
  it.each<[string, number[], string[]]>([
    ['a normal hour', withLast(() => {}), []],
    ['6.8× the usual hour: spike', withLast((v) => (v[JUDGED] = 14_200)), ['spike']],
    ['1.5× the usual: within minRatio, nothing', withLast((v) => (v[JUDGED] = Math.round(base(JUDGED) * 1.5))), []],
    ['to 15 %: drop', withLast((v) => (v[JUDGED] = 300)), ['drop']],
    ['to 70 %: nothing', withLast((v) => (v[JUDGED] = Math.round(base(JUDGED) * 0.7))), []],
    // Issue 13: one silent hour where 2,100 are due is a total outage (was: nothing until the second hour).
    ['one silent office hour at 2,100/h: a one-hour outage, gap', withLast((v) => (v[JUDGED] = 0)), ['gap']],
    ['one silent office hour at 150/h: not a drop, not a gap yet', series(JUDGED + 1, (_h, t) => (t === JUDGED ? 0 : Math.round(office(t % HOURS_PER_WEEK, 150) * wobble(t, 0.05)))), []],
    ['two silent office hours: gap', withLast((v) => (v[JUDGED] = v[JUDGED - 1] = 0)), ['gap']],
    ['silent at night as usual: nothing', series(JUDGED + 1 - 10, (h, t) => (h % 24 >= 18 || h % 24 < 9 ? 0 : base(t))), []],
    ['back after a 9-hour gap yesterday: no spike', withLast((v) => v.fill(0, JUDGED - 24 - 4, JUDGED - 24 + 5)), []],
  ])('%s', (_name, values, expected) => {
    expect(kinds(run(values))).toEqual(expected);
  });

  it('says what happened in the customer\'s words, times in their zone', () => {
    const v = series(JUDGED + 1, (h) => office(h, 2100));
    v[JUDGED] = 14_200;
    const [d] = run(v, P, { unit: 'API calls', timeZone: 'Europe/Berlin' });
    expect(d).toMatchObject({ kind: 'spike', severity: 'critical', observed: 14_200, baseline: 2100, windowStartMs: MONDAY + JUDGED * HOUR_MS, windowEndMs: MONDAY + (JUDGED + 1) * HOUR_MS });
    // 13:00-14:00 UTC is 14:00-15:00 in Berlin in January; spread = √(2,100 + (0.1 × 2,100)²) ≈ 215.
    expect(d!.message).toBe('14,200 API calls in the hour to 15:00, usually 2,100 ± 210 at this hour');
  });

  it('a gap says since when, and how much usually comes', () => {
    const v = series(JUDGED + 1, (h) => office(h, 2100));
    v.fill(0, JUDGED - 4); // 09:00-14:00 UTC silent
    const [d] = run(v);
    expect(d).toMatchObject({ kind: 'gap', severity: 'critical', score: 5, observed: 0, baseline: 5 * 2100, windowStartMs: MONDAY + (JUDGED - 4) * HOUR_MS });
    expect(d!.message).toBe('No API calls for 5 hours since 09:00; usually 2,100 an hour at this time');
    expect(run(series(JUDGED + 1, (h) => office(h, 2100)).fill(0, JUDGED + 1 - P.gapHours))[0]).toMatchObject({ kind: 'gap', severity: 'warning', score: P.gapHours });
    const longer = [...v, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    const [d2] = run(longer);
    expect(d2).toMatchObject({ kind: 'gap', severity: 'critical', score: 25 });
    expect(d2!.message).toMatch(/^No API calls for 25 hours since Fri 09:00; usually [\d,]+ an hour at this time$/);
  });

  it('a drop says the same', () => {
    const v = series(JUDGED + 1, (h) => office(h, 2100));
    v[JUDGED] = 300;
    const [d] = run(v);
    expect(d).toMatchObject({ kind: 'drop', severity: 'critical' });
    expect(d!.message).toBe('300 API calls in the hour to 14:00, usually 2,100 ± 210 at this hour');
  });

  it('severity: a 2.5× spike is a warning, a 10× one critical', () => {
    const at = (x: number) => {
      const v = series(JUDGED + 1, (h) => office(h, 2100));
      v[JUDGED] = x;
      return run(v)[0]?.severity;
    };
    expect([at(2100 * 2.5), at(21_000)]).toEqual(['warning', 'critical']);
  });

  it('a flat baseline (MAD 0) is floored: 1.9× is no spike, 2.5× is', () => {
    const flat = (last: number) => [...new Array<number>(JUDGED).fill(1000), last];
    expect(kinds(run(flat(1900)))).toEqual([]);
    expect(kinds(run(flat(2500)))).toEqual(['spike']);
  });

  it('a customer that never sent anything, or an empty series, has nothing', () => {
    expect(run([])).toEqual([]);
    expect(run(new Array<number>(1000).fill(0))).toEqual([]);
  });

  describe('new customers', () => {
    // Started 4 days before the judged hour at 2,100/h in office hours.
    const young = (days: number) => series(JUDGED + 1, (h, t) => (t < JUDGED + 1 - days * 24 ? 0 : office(h, 2100)));
    it('less than two weeks of history: a 10× hour is no spike (onboarding is supposed to change)', () => {
      for (const days of [4, 10]) {
        const v = young(days);
        v[JUDGED] = 21_000;
        expect(kinds(run(v))).toEqual([]);
      }
    });
    it('less than a week: a gap needs twice the silent hours (same hour on previous days as the baseline)', () => {
      const silent = (hours: number) => {
        const v = young(4);
        v.fill(0, JUDGED + 1 - hours);
        return kinds(run(v));
      };
      expect(silent(P.gapHours)).toEqual([]);
      expect(silent(2 * P.gapHours)).toEqual(['gap']);
    });
    it('a day of history is no baseline at all', () => {
      const v = young(1);
      v.fill(0, JUDGED - 5);
      expect(kinds(run(v))).toEqual([]);
    });
  });

  it('low volume: 3 events in an hour that usually has 0.5 is counting noise, 40 is a spike; no drops', () => {
    const low = series(JUDGED + 1, (_h, t) => [0, 1, 0, 0, 2, 0, 1, 0][t % 8]!);
    expect(kinds(run([...low.slice(0, -1), 3]))).toEqual([]);
    expect(kinds(run([...low.slice(0, -1), 40]))).toEqual(['spike']);
    const quiet = series(JUDGED + 1, (h) => (h % 24 === 13 ? 0 : 1));
    // At low volume the baseline is the trimmed mean of the neighbouring hours' weekly samples (a median of counts that are mostly 0 says "none").
    expect(run([...quiet.slice(0, -1), 40])[0]!.message).toBe('40 API calls in the hour to 14:00, usually 0.64 ± 0.8 at this hour');
    const four = series(JUDGED + 1, () => 4);
    expect(kinds(run([...four.slice(0, -1), 1]))).toEqual([]);
  });

  it.each([
    ['a spike', 30_000],
    ['a gap', 0],
  ])('%s at this hour in one baseline week does not move the baseline (median of four)', (_name, past) => {
    const v = series(JUDGED + 1, (_h, t) => Math.round(office(t % HOURS_PER_WEEK, 2100) * wobble(t, 0.05)));
    v[JUDGED - 2 * HOURS_PER_WEEK] = past;
    expect(kinds(run(v))).toEqual([]);
    v[JUDGED] = 14_000;
    expect(kinds(run(v))).toEqual(['spike']);
    v[JUDGED] = 200;
    expect(kinds(run(v))).toEqual(['drop']);
  });

  it('a permanent step up is absorbed by the level within days, not alerted every hour', () => {
    const v = series(JUDGED + 1, (h, t) => office(h, 2100) * (t >= JUDGED - 72 ? 2.5 : 1));
    expect(kinds(run(v))).toEqual([]);
  });

  it('historyHours covers the baseline weeks and the level window', () => {
    expect(historyHours(P)).toBe((P.baselineWeeks + 1) * HOURS_PER_WEEK + P.levelWindowHours);
  });
});

describe('detect: scoring helpers', () => {
  it('the stabilised transform is Anscombe at c = 0 and log-like at large counts', () => {
    expect(stabilised(0, 0)).toBeCloseTo(2 * Math.sqrt(0.375));
    expect(stabilised(1e6, 0.1) - stabilised(1e5, 0.1)).toBeCloseTo(Math.log(10) / 0.1, 1);
  });
  it('recent level: 1 for a series as usual, ~1.2 after 20 % growth, unmoved by a gap', () => {
    const v = series(6 * HOURS_PER_WEEK, (h, t) => office(h, 1000) * (t >= 5 * HOURS_PER_WEEK ? 1.2 : 1));
    expect(recentLevel(v, 5 * HOURS_PER_WEEK, 0, P).level).toBeCloseTo(1, 5);
    expect(recentLevel(v, 6 * HOURS_PER_WEEK, 0, P).level).toBeCloseTo(1.2, 1);
    v.fill(0, 6 * HOURS_PER_WEEK - 30, 6 * HOURS_PER_WEEK - 10);
    expect(recentLevel(v, 6 * HOURS_PER_WEEK, 0, P).level).toBeCloseTo(1.2, 1);
  });
});

describe('detect: properties', () => {
  /** Five weeks of office-hours usage at `peak` with ±`noise` wobble, judged at an office hour of week 6, with an injected anomaly. */
  const arbCase = fc.record({
    peak: fc.double({ min: 500, max: 50_000, noNaN: true }),
    noise: fc.double({ min: 0, max: 0.1, noNaN: true }),
    seed: fc.integer({ min: 0, max: 1000 }),
    day: fc.integer({ min: 0, max: 4 }),
    hour: fc.integer({ min: 11, max: 17 }),
    anomaly: fc.constantFrom('none', 'spike', 'drop', 'gap'),
  });
  const build = (c: { peak: number; noise: number; seed: number; day: number; hour: number; anomaly: string }) => {
    const judged = 5 * HOURS_PER_WEEK + c.day * 24 + c.hour;
    const v = series(judged + 1, (h, t) => office(h, c.peak) * wobble(t + c.seed, c.noise));
    if (c.anomaly === 'spike') v[judged] = v[judged]! * 5;
    if (c.anomaly === 'drop') v[judged] = v[judged]! * 0.1;
    if (c.anomaly === 'gap') v.fill(0, judged + 1 - P.gapHours);
    return v;
  };

  it('finds the injected anomaly and nothing else (5× spike, drop to 10 %, a gap of gapHours at office hours)', () => {
    fc.assert(
      fc.property(arbCase, (c) => {
        expect(kinds(run(build(c)))).toEqual(c.anomaly === 'none' ? [] : [c.anomaly]);
      }),
    );
  });

  it('scaling the whole series by a constant ≥ 1 does not change which kinds are detected', () => {
    fc.assert(
      fc.property(arbCase, fc.double({ min: 1, max: 1000, noNaN: true }), (c, k) => {
        const v = build(c);
        expect(kinds(run(v.map((x) => x * k)))).toEqual(kinds(run(v)));
      }),
    );
  });

  it('steady growth (up to +10 %/week) creates no spike at any hour of the last week', () => {
    fc.assert(
      fc.property(fc.double({ min: 0, max: 0.1, noNaN: true }), fc.double({ min: 20, max: 20_000, noNaN: true }), fc.boolean(), (growth, peak, alwaysOn) => {
        const v = series(6 * HOURS_PER_WEEK, (h, t) => Math.round((alwaysOn ? peak * (0.6 + 0.4 * Math.sin((h / 24) * 2 * Math.PI)) : office(h, peak)) * Math.pow(1 + growth, t / HOURS_PER_WEEK) * wobble(t, 0.05)));
        for (let end = 5 * HOURS_PER_WEEK; end <= v.length; end += 7) expect(kinds(run(v.slice(0, end))).filter((k) => k === 'spike')).toEqual([]);
      }),
      { numRuns: 30 },
    );
  });

  it('a flat series produces nothing, whatever its level and length', () => {
    fc.assert(
      fc.property(fc.double({ min: 0, max: 1e7, noNaN: true }), fc.integer({ min: 1, max: 6 * HOURS_PER_WEEK }), (x, n) => {
        expect(run(new Array<number>(n).fill(x))).toEqual([]);
      }),
    );
  });

  it('low volume (Poisson, mean 0.5/h): an hour with 3 events is not a spike, and silence is no gap', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 0x7fffffff }), { minLength: 5 * HOURS_PER_WEEK, maxLength: 5 * HOURS_PER_WEEK }), (us) => {
        // Poisson(0.5) by inversion from uniform integers.
        const v = us.map((u) => {
          let k = 0;
          let p = Math.exp(-0.5);
          let cdf = p;
          const x = u / 0x80000000;
          while (x > cdf) {
            k++;
            p *= 0.5 / k;
            cdf += p;
          }
          return k;
        });
        expect(kinds(run([...v, 3]))).toEqual([]);
        expect(kinds(run([...v, 0, 0, 0, 0, 0, 0]))).toEqual([]);
      }),
      { numRuns: 50 },
    );
  });
});

describe('bill shock', () => {
  const opts = { ratio: 1.5, currency: 'USD', windowStartMs: Date.UTC(2026, 2, 1), windowEndMs: Date.UTC(2026, 3, 1) };
  it.each<[string, number, number[], { kind: string; severity: string; score: number } | undefined]>([
    ['no previous invoice: no baseline', 5000, [], undefined],
    ['as usual', 1250, [1200, 1150, 1300], undefined],
    ['1.4× the median: below the ratio', 1680, [1200, 1150, 1300], undefined],
    ['2× the median: warning', 2400, [1200, 1150, 1300], { kind: 'bill_shock', severity: 'warning', score: 2 }],
    ['4× the median: critical', 4800, [1200, 1150, 1300], { kind: 'bill_shock', severity: 'critical', score: 4 }],
    ['after free months: 50 vs 0 is against the 1-unit floor', 50, [0, 0], { kind: 'bill_shock', severity: 'critical', score: 50 }],
    ['0.50 vs 0.20: ratio 2.5 but less than 1 unit more', 0.5, [0.2], undefined],
  ])('%s', (_name, projected, last, expected) => {
    const d = billShock(projected, last, opts);
    if (expected === undefined) expect(d).toBeUndefined();
    else expect(d).toMatchObject(expected);
  });
  it('message', () => {
    expect(billShock(4820, [1200, 1150, 1300], opts)!.message).toBe('Projected invoice 4,820.00 USD this period, usually 1,200.00 (median of the last 3 invoices)');
    expect(billShock(4820, [1200], opts)!.message).toBe('Projected invoice 4,820.00 USD this period, usually 1,200.00 (the last invoice)');
  });
});

describe('threshold crossings', () => {
  it.each<[string, number, number, number[], number[], number[]]>([
    ['below every percentage', 700, 1000, [80, 100], [], []],
    ['crosses 80', 800, 1000, [80, 100], [], [80]],
    ['crosses both at once, ascending', 1200, 1000, [100, 80], [], [80, 100]],
    ['80 already alerted', 950, 1000, [80, 100], [80], []],
    ['80 alerted, now 100', 1000, 1000, [80, 100], [80], [100]],
    ['fractional percentages are exact', 333, 1000, [33.3], [], [33.3]],
    ['a cap of 0 is a configuration error: nothing', 10, 0, [80], [], []],
    ['duplicates listed once', 900, 1000, [80, 80], [], [80]],
  ])('%s', (_name, usage, cap, percents, already, expected) => {
    expect(thresholdCrossings(usage, cap, percents, already)).toEqual(expected);
  });
  it('property: crossings are monotone in usage and never repeat an alerted one', () => {
    fc.assert(
      fc.property(fc.double({ min: 0, max: 1e6, noNaN: true }), fc.double({ min: 0, max: 1e6, noNaN: true }), fc.double({ min: 1, max: 1e6, noNaN: true }), fc.uniqueArray(fc.integer({ min: 1, max: 200 })), (a, b, cap, percents) => {
        const [lo, hi] = a <= b ? [a, b] : [b, a];
        const first = thresholdCrossings(lo, cap, percents, []);
        const then = thresholdCrossings(hi, cap, percents, first);
        expect(then.some((x) => first.includes(x))).toBe(false);
        expect([...first, ...then].sort((x, y) => x - y)).toEqual(thresholdCrossings(hi, cap, percents, []));
      }),
    );
  });
});
