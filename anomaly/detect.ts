/**
 * Anomaly scoring: spikes, drops and gaps in one customer × meter's hourly usage, plus the bill
 * shock and threshold checks the scan runs on invoices and caps. Pure: the series, the
 * parameters and the wording options in, detections out; "now" is the end of the series (the scan
 * passes complete hours only, so the last value is the hour that has just closed).
 *
 * ## Baseline: same hour of the week, median and MAD, rescaled to the recent level
 *
 * - Expected value of hour t = median of the same hour of the week in the last `baselineWeeks`
 *   weeks (t − 168 h, t − 336 h, …) × the recent level. Usage is weekly-seasonal (business hours,
 *   weekends), so the same hour of the week is the only comparison that needs no model of the
 *   customer's day; the median of four weeks ignores one bad week (last Tuesday's outage or spike
 *   is one sample of four), which a mean or an EWMA does not: one 10× hour lifts a seasonal
 *   EWMA (α = 0.25) to 3.25× and the next normal week at that hour then looks like a drop to
 *   30 % (clipping the updates fixes that at the cost of another parameter). The median also
 *   needs no state: each scan recomputes it from the hourly rollups, so a scan can crash, run
 *   twice or run late and still say the same thing, and "usually 2,100 ± 300 at this hour" is
 *   literally the baseline and its spread.
 * - Recent level (growth is not a spike): the weighted median, over the `levelWindowHours` hours
 *   before the judged hour, of observed / seasonal median (weights = the seasonal median, so
 *   busy hours count more than quiet ones; silent hours that normally have ≥ `minExpected` are
 *   left out, they are gaps), shrunk towards 1 by a prior worth 5 × `minExpected` events. A
 *   customer growing 5 %/week is ~13 % above a four-week median; the level absorbs that, and a
 *   permanent step (a new contract) once it covers half the window's weight. The weighted median
 *   is robust: an ongoing spike or drop covering less than half of the weight does not move it.
 *   For a gap the level window ends where the silence began.
 * - Spread, on a log scale because usage noise is multiplicative (a customer at 50,000/h varies
 *   by ±10 %, not by ±√50,000): c = the largest of (a) 1.4826 × MAD of log(1 + x) over the
 *   weekly samples of this hour, (b) the same over the recent hours' residuals
 *   log(1 + observed) − log(1 + level × median) (a pooled estimate of this customer's noise: four
 *   samples often agree by chance), both with the Poisson part (≈ 1/λ) taken out, and (c)
 *   `spreadFloor` (a spread of 0 would make anything an anomaly).
 * - Score: one z-score for every volume, from the variance-stabilising transform of counts with
 *   variance λ + c²λ² (Poisson noise plus multiplicative noise), g(x) = (2/c)·asinh(c·√(x + 3/8)):
 *   z = g(observed) − g(expected). At a few events an hour g is Anscombe's 2√x (the Poisson
 *   test, which is what matters at 20/h); at thousands it is log(x)/c (a robust z on a log
 *   scale). A spike needs z ≥ `zThreshold` and observed/expected ≥ `minRatio`; a drop
 *   z ≤ −`zThreshold` and expected/observed ≥ `minRatio`. The log-like scale makes spikes and
 *   drops symmetric (a drop to 30 % is as far as a 3.3× spike), where on a linear scale a drop
 *   could never be further than expected/spread standard deviations. Severity: critical from
 *   twice the threshold and twice the ratio, else warning; gaps are critical from 2 × `gapHours`.
 * - Why these defaults: `bench/anomaly-eval.ts` (tuned on one seed, reported on others).
 *
 * ## Special cases
 *
 * - Low volume (expected < `minExpected` per hour): the transform is then the Poisson test, so
 *   counting noise is not flagged: 3 events in an hour that usually has 0.5 scores 1.8, 30 scores
 *   8.7 (a spike). Drops are not raised (from 3 events an hour, 0 or 1 is chance).
 * - New customers: spikes and drops need the same hour of the week in at least two earlier
 *   weeks. An onboarding customer's usage is supposed to change, and the first week (often a
 *   ramp) is no baseline on its own: with one sample there is no spread, and in the evaluation
 *   it produced nearly all false positives. Gaps matter most for new customers (a new
 *   integration that stops), so in the first week gaps fall back to the median of the same hour
 *   on the previous days (at least two), with doubled thresholds (2 × `gapHours` active hours and
 *   2 × `gapMinExpected` events) because a daily baseline does not know about weekends. From two
 *   weeks on, the weekly median uses the weeks there are (up to `baselineWeeks`).
 * - Gaps: the last hour has no events and the trailing run of empty hours holds at least
 *   `gapHours` normally active hours (expected ≥ `activeHourExpected`) and at least
 *   `gapMinExpected` expected events in total (Poisson: P(silence) = e^−expected, e^−20 ≈ 2e-9).
 *   Counting active hours (not all hours of the run) means a customer who starts an hour late
 *   in the morning after a silent night is not yet a gap. An hour with no events is never a drop:
 *   silence is a gap, raised once it has lasted `gapHours`.
 * - Hours before the series' first non-zero value are "not a customer yet", not zeros; a series
 *   that is all zeros has nothing to say. The counting-noise test assumes values are event counts
 *   (COUNT meters); for SUM meters the value's unit is not an event, and `minExpected` and the
 *   gap thresholds should be set in the meter's unit.
 * - Hour of the week is taken in UTC: across a daylight-saving change a business-hours customer's
 *   baseline is off by an hour for the `baselineWeeks` weeks after it (the median of four samples
 *   and the level absorb most of it; ramp hours can alert).
 */
import { clockTime, formatApprox, formatExact, formatMoney, hoursText, sinceTime } from './describe.ts';
import { MAD_SCALE, median, scaledMad, weightedMedian } from './robust.ts';
import { DEFAULT_DETECTOR_PARAMS, type DescribeOptions, type Detection, type DetectorParams, type HourlySeries, type Severity } from './types.ts';

export const HOUR_MS = 3_600_000;
export const HOURS_PER_WEEK = 168;
const HOURS_PER_DAY = 24;
/** Days of same-hour history the new-customer gap fallback looks at, and how many it needs. */
const FALLBACK_DAYS = 6;
const FALLBACK_MIN_DAYS = 2;
/** The level estimate is shrunk towards 1 by a prior worth this many × `minExpected` events. */
const LEVEL_PRIOR_EXPECTED = 5;
/** Same-hour samples a spike or drop needs: a customer's first week (onboarding, a ramp) is no baseline on its own. */
const MIN_LEVEL_WEEKS = 2;
/** Hours of recent residuals needed to estimate the customer's noise from them. */
const MIN_SPREAD_HOURS = 12;

type Resolved = Required<DetectorParams>;

function resolve(params: DetectorParams): Resolved {
  return { ...DEFAULT_DETECTOR_PARAMS, ...definedOnly(params) };
}

function definedOnly(params: DetectorParams): Partial<Resolved> {
  const out: Partial<Record<keyof Resolved, number>> = {};
  for (const [k, v] of Object.entries(params) as Array<[keyof Resolved, number | undefined]>) if (v !== undefined) out[k] = v;
  return out;
}

/**
 * Hours of history `detect` can use before (and including) the judged hour: the baseline weeks,
 * the level window before the oldest hour it rescales, and up to a week of an ongoing gap. A
 * shorter series works (missing samples are skipped), with a weaker baseline.
 */
export function historyHours(params: DetectorParams): number {
  const p = resolve(params);
  return (p.baselineWeeks + 1) * HOURS_PER_WEEK + p.levelWindowHours;
}

/**
 * Judges the last hour of `series` (and, for a gap, the trailing run of empty hours): at most one
 * detection, a spike, a drop or a gap.
 */
export function detect(series: HourlySeries, params: DetectorParams, describe: DescribeOptions): Detection[] {
  const p = resolve(params);
  const v = series.values;
  const last = v.length - 1;
  if (last < 0) return [];
  const first = v.findIndex((x) => x > 0);
  if (first < 0) return [];
  const d = v[last] === 0 ? judgeGap(series, first, p, describe) : judgeLevel(series, first, p, describe);
  return d ? [d] : [];
}

/** log(1 + x), with negative values (a SUM meter's corrections) read as 0. */
const logCount = (x: number) => Math.log1p(Math.max(0, x));

/** Same hour of the week in the previous `weeks` weeks, newest first, not before the first event. */
function weeklySamples(v: readonly number[], i: number, first: number, weeks: number): number[] {
  const out: number[] = [];
  for (let k = 1; k <= weeks; k++) {
    const j = i - k * HOURS_PER_WEEK;
    if (j < first) break;
    out.push(v[j]!);
  }
  return out;
}

/** What the recent hours say about the seasonal baseline: its level, and the customer's multiplicative noise. */
export interface RecentLevel {
  /** Recent usage / seasonal median (weighted median over the window, shrunk towards 1). 1 = as usual. */
  level: number;
  /** Log-scale spread of the recent hours around level × seasonal median, counting noise removed; 0 if unknown. */
  spread: number;
}

/**
 * The recent level and noise over the `levelWindowHours` hours before `end` (exclusive). Hours
 * without a seasonal sample, with a seasonal median of 0, or silent while normally at least
 * `minExpected` (a gap: judged separately, and it would drag the level to 0) are left out.
 */
export function recentLevel(v: readonly number[], end: number, first: number, params: DetectorParams): RecentLevel {
  const p = resolve(params);
  if (p.levelWindowHours <= 0) return { level: 1, spread: 0 };
  const observed: number[] = [];
  const medians: number[] = [];
  const ratios: number[] = [];
  let weight = 0;
  for (let h = Math.max(first, end - p.levelWindowHours); h < end; h++) {
    const s = weeklySamples(v, h, first, p.baselineWeeks);
    if (s.length === 0) continue;
    const m = median(s);
    if (!(m > 0) || (v[h] === 0 && m >= p.minExpected)) continue;
    observed.push(v[h]!);
    medians.push(m);
    ratios.push(v[h]! / m);
    weight += m;
  }
  if (weight === 0) return { level: 1, spread: 0 };
  const prior = LEVEL_PRIOR_EXPECTED * p.minExpected;
  const level = (weight * weightedMedian(ratios, medians) + prior) / (weight + prior);
  // Noise: log residuals of the hours that are not low volume, minus the Poisson part (≈ 1/λ on a log scale).
  const residuals: number[] = [];
  const poisson: number[] = [];
  for (let j = 0; j < observed.length; j++) {
    const e = level * medians[j]!;
    if (e < p.minExpected) continue;
    residuals.push(Math.abs(logCount(observed[j]!) - logCount(e)));
    poisson.push(1 / (e + 1));
  }
  if (residuals.length < MIN_SPREAD_HOURS) return { level, spread: 0 };
  const mad = MAD_SCALE * median(residuals);
  return { level, spread: Math.sqrt(Math.max(0, mad * mad - median(poisson))) };
}

/**
 * Variance-stabilising transform for counts with variance λ + c²λ² (Poisson noise plus a
 * multiplicative spread c): g(x) = (2/c)·asinh(c·√(x + 3/8)). Differences of g are z-scores: for
 * small counts g ≈ 2√(x + 3/8) (Anscombe's transform, the Poisson test), for large ones
 * g ≈ log(x)/c + const (the log-scale test), with one statistic across every volume.
 */
export function stabilised(x: number, c: number): number {
  const r = Math.sqrt(Math.max(0, x) + 0.375);
  return c > 0 ? (2 / c) * Math.asinh(c * r) : 2 * r;
}

function judgeLevel(series: HourlySeries, first: number, p: Resolved, describe: DescribeOptions): Detection | undefined {
  const v = series.values;
  const i = v.length - 1;
  const samples = weeklySamples(v, i, first, p.baselineWeeks);
  if (samples.length < MIN_LEVEL_WEEKS) return undefined; // less than two weeks of history: no spikes or drops
  const observed = v[i]!;
  const m = median(samples);
  const recent = recentLevel(v, i, first, p);
  const expected = m * recent.level;
  // Week-to-week spread at this hour, counting noise removed (it is in the transform already).
  const hourMad = scaledMad(samples.map(logCount));
  const hourSpread = Math.sqrt(Math.max(0, hourMad * hourMad - 1 / (m + 1)));
  const c = Math.max(hourSpread, recent.spread, p.spreadFloor);
  const z = stabilised(observed, c) - stabilised(expected, c);
  const low = expected < p.minExpected;
  const spread = Math.sqrt(expected + (c * expected) ** 2);
  let kind: 'spike' | 'drop';
  let ratio: number;
  if (observed >= p.minRatio * expected && z >= p.zThreshold) {
    kind = 'spike';
    ratio = expected > 0 ? observed / expected : Number.POSITIVE_INFINITY;
  } else if (!low && observed * p.minRatio <= expected && z <= -p.zThreshold) {
    kind = 'drop';
    ratio = expected / observed;
  } else {
    return undefined;
  }
  const score = Math.abs(z);
  const severity: Severity = score >= 2 * p.zThreshold && ratio >= 2 * p.minRatio ? 'critical' : 'warning';
  const windowStartMs = series.startMs + i * HOUR_MS;
  const windowEndMs = windowStartMs + HOUR_MS;
  return {
    kind,
    severity,
    score,
    windowStartMs,
    windowEndMs,
    observed,
    baseline: expected,
    spread,
    message: `${formatExact(observed)} ${describe.unit} in the hour to ${clockTime(windowEndMs, describe.timeZone)}, usually ${expected > 0 ? `${formatApprox(expected)} ± ${formatApprox(spread)}` : 'none'} at this hour`,
  };
}

function judgeGap(series: HourlySeries, first: number, p: Resolved, describe: DescribeOptions): Detection | undefined {
  const v = series.values;
  const n = v.length;
  let runStart = n;
  while (runStart > first && v[runStart - 1] === 0) runStart--;
  const hours = n - runStart;
  if (hours < p.gapHours) return undefined;
  const { level } = recentLevel(v, runStart, first, p);
  let expected = 0;
  let active = 0;
  let fallback = false;
  for (let h = runStart; h < n; h++) {
    const s = weeklySamples(v, h, first, p.baselineWeeks);
    let e: number;
    if (s.length > 0) {
      e = median(s) * level;
    } else {
      // New customer: the same hour on the previous days, before the silence began.
      const days: number[] = [];
      for (let k = 1; k <= FALLBACK_DAYS; k++) {
        const j = h - k * HOURS_PER_DAY;
        if (j < first) break;
        if (j < runStart) days.push(v[j]!);
      }
      if (days.length < FALLBACK_MIN_DAYS) continue;
      e = median(days);
      fallback = true;
    }
    expected += e;
    if (e >= p.activeHourExpected) active++;
  }
  const strict = fallback ? 2 : 1;
  if (active < strict * p.gapHours || expected < strict * p.gapMinExpected) return undefined;
  const windowStartMs = series.startMs + runStart * HOUR_MS;
  const windowEndMs = series.startMs + n * HOUR_MS;
  return {
    kind: 'gap',
    severity: hours >= 2 * p.gapHours ? 'critical' : 'warning',
    score: hours,
    windowStartMs,
    windowEndMs,
    observed: 0,
    baseline: expected,
    spread: Math.sqrt(expected),
    message: `No ${describe.unit} for ${hoursText(hours)} since ${sinceTime(windowStartMs, windowEndMs, describe.timeZone)}; usually ${formatApprox(expected / hours)} an hour at this time`,
  };
}

export interface BillShockOptions {
  /** Projected / usual (median of the last invoices) at which bill shock is raised; critical at twice this. */
  ratio: number;
  /** And the projection must exceed the usual total by at least this much (currency units); default 1. Also the floor of the usual total, so a first paid month after free ones has a finite ratio. */
  minIncrease?: number;
  currency: string;
  /** The billing period the projection is for, half-open, UTC ms. */
  windowStartMs: number;
  windowEndMs: number;
}

/**
 * Bill shock: the projected total for the current period against the median of the last
 * invoices' totals (currency units). Undefined without previous invoices (no baseline) or when
 * the projection is not well above it.
 */
export function billShock(projectedTotal: number, lastTotals: number[], opts: BillShockOptions): Detection | undefined {
  if (lastTotals.length === 0) return undefined;
  const minIncrease = opts.minIncrease ?? 1;
  const usual = median(lastTotals);
  const score = projectedTotal / Math.max(usual, minIncrease, Number.MIN_VALUE);
  if (score < opts.ratio || projectedTotal - usual < minIncrease) return undefined;
  const n = lastTotals.length;
  return {
    kind: 'bill_shock',
    severity: score >= 2 * opts.ratio ? 'critical' : 'warning',
    score,
    windowStartMs: opts.windowStartMs,
    windowEndMs: opts.windowEndMs,
    observed: projectedTotal,
    baseline: usual,
    spread: scaledMad(lastTotals),
    message: `Projected invoice ${formatMoney(projectedTotal)} ${opts.currency} this period, usually ${formatMoney(usual)} (${n === 1 ? 'the last invoice' : `median of the last ${n} invoices`})`,
  };
}

/**
 * Threshold alerts: the percentages of `cap` that `usage` has reached and that have not been
 * alerted yet, ascending. Nothing for a cap ≤ 0 (a configuration error the API rejects).
 */
export function thresholdCrossings(usage: number, cap: number, percents: number[], alreadyAlerted: number[]): number[] {
  if (!(cap > 0)) return [];
  const done = new Set(alreadyAlerted);
  return [...new Set(percents)].filter((pct) => !done.has(pct) && usage * 100 >= cap * pct).sort((a, b) => a - b);
}
