/**
 * Anomaly scoring: spikes, drops and gaps in one customer × meter's hourly usage, plus the bill
 * shock and threshold checks the scan runs on invoices and caps. Pure: the series, the
 * parameters and the wording options in, detections out; "now" is the end of the series (the scan
 * passes complete hours only, so the last value is the hour that has just closed). The offsets of
 * the customer's zone come from Intl, memoised (`clock.ts`).
 *
 * The model, briefly (anomaly/README.md has the reasons and the figures):
 * - Baseline: median of the same LOCAL hour of the week (`describe.timeZone`) in the last
 *   `baselineWeeks` weeks, so a clock change does not shift it; a UTC cron is told apart by which
 *   clock fits its last week. × the recent level: the weighted median of observed / median over
 *   `levelWindowHours` (growth), and a 24-hour level: a spike is judged against the higher of the
 *   two, a drop against the lower, so a step is the new normal within a day and the recovery from a
 *   drop is no spike. At low volume the spike baseline is the trimmed mean of the neighbouring hours'
 *   weekly samples (the median of counts that are mostly 0 says "none").
 * - Noise: variance D·λ + c²λ². c (multiplicative) from consecutive residual differences (a step
 *   moves one of them) and the weekly samples' MAD, floored at `spreadFloor`; D (clumped events)
 *   from how much more often than Poisson the customer is silent. Score: z = g(x/D) − g(λ/D) with
 *   g(x) = (2/c)·asinh(c·√(x + 3/8)): the Poisson test at a few events, a log-scale test at
 *   thousands. Spike: z ≥ `zThreshold` and ≥ `minRatio`×; drop likewise below, not at low volume
 *   (expected/D < `minExpected`), not when the hour before held the missing events, and not on a
 *   weekday that so far looks like a weekend day (a holiday). Critical from twice both thresholds.
 * - Cron runs (a block of ≤ `RUN_MAX_HOURS` busy hours between quiet ones in the weekly profile)
 *   are judged per run: from the hour before the run to now, against that window's weekly totals.
 * - Gap: the trailing silence holds `gapHours` active hours and `gapMinExpected` events (over D),
 *   or its last hour alone is an outage: ≥ `outageMinExpected` due and every weekly sample at least
 *   half of it (a busy hour, a cron's run). Not on a weekend-looking day where a weekend day could be
 *   silent too. New customers (under two weeks) get no spikes or drops, and gaps from the same hour
 *   on previous days with doubled thresholds. Hours before the first event are not zeros.
 */
import { clockTime, formatApprox, formatExact, formatMoney, hoursText, sinceTime } from './describe.ts';
import { hourlyOffsets } from './clock.ts';
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
/** Hours of the short level (a step is the new normal once it covers half of their weight). */
const SHORT_LEVEL_HOURS = 24;
/** The noise is the largest of the residual differences' spreads at lags 1 to this. */
const SPREAD_LAGS = 2;
/** A slow leak: the daily level rose on each of this many days in a row (+5 % to +50 % a day: a ramp, not a step) to near `minRatio`. */
const LEAK_DAYS = 5;
const LEAK_DAILY_RISE = [1.05, 1.5] as const;
const LEAK_LEVEL = 0.9;
/** Dispersion is estimated on hours with a weekly mean in [0.5, this] (where silence says something), and capped. */
const DISPERSION_MAX_EXPECTED = 20;
const DISPERSION_MAX = 100;
/** A day off needs weekdays at least this many times busier than weekend days (else a low day is just low). */
const DAY_OFF_MIN_RATIO = 1.5;
/** …and, for a silence, at this many hours of the day so far (a drop: the judged hour). */
const DAY_OFF_MIN_HOURS = 3;
/** An hour this far above its baseline, just before a drop, may hold what the dropped hour lacks. */
const SHIFT_EXCESS = 1.5;
/** A cron run: at most this many consecutive hours, each ≥ 1/`RUN_CONTRAST` of its busiest, between hours below that. */
const RUN_MAX_HOURS = 3;
const RUN_CONTRAST = 10;

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
 * detection, a spike, a drop or a gap. `describe.timeZone` is also the clock the seasonality
 * follows (the customer's local hour of the week).
 */
export function detect(series: HourlySeries, params: DetectorParams, describe: DescribeOptions): Detection[] {
  const p = resolve(params);
  const v = series.values;
  const last = v.length - 1;
  if (last < 0) return [];
  const first = v.findIndex((x) => x > 0);
  if (first < 0) return [];
  // A silent hour of a cron's run is also judged as a run (a missed run that a trickle does not fill, or of fewer events than an outage).
  const judge = (ctx: Ctx) => (v[last] === 0 ? (judgeGap(ctx, describe) ?? (runAround(ctx, last) ? judgeLevel(ctx, describe) : undefined)) : judgeLevel(ctx, describe));
  const [best, other] = contexts(series, first, p, describe.timeZone);
  const d = judge(best);
  // Within weeks of a clock change, an hour is anomalous only if it is under both clocks (a cron that moved an hour is not).
  if (!d || (other && judge(other)?.kind !== d.kind)) return [];
  return [d];
}

/** One call's inputs, with the clock its seasonality follows. */
interface Ctx {
  series: HourlySeries;
  v: readonly number[];
  first: number;
  p: Resolved;
  /** UTC offset (whole hours) per index of the clock the customer follows; undefined = UTC. */
  off: Int8Array | undefined;
  /** Local-time offsets for the day-of-week (days off); undefined = UTC. */
  localOff: Int8Array | undefined;
}

/**
 * The clock the customer's week follows: local time (people, local crons) or UTC (UTC crons), and
 * the other one. Only a clock change inside the series tells them apart; then the one under which
 * the last week fits its weekly samples better comes first.
 */
function contexts(series: HourlySeries, first: number, p: Resolved, timeZone: string): [Ctx, Ctx?] {
  const base: Ctx = { series, v: series.values, first, p, off: undefined, localOff: undefined };
  const n = series.values.length;
  const { hours, changes } = hourlyOffsets(timeZone, series.startMs, n);
  const local: Ctx = { ...base, off: hours, localOff: hours };
  if (!changes) return [hours[0] === 0 ? base : local];
  const utc: Ctx = { ...base, localOff: hours };
  return misfit(local) <= misfit(utc) ? [local, utc] : [utc, local];
}

/** How badly the last week fits its weekly medians (sum of |log ratio| weighted by the median). */
function misfit(ctx: Ctx): number {
  const n = ctx.v.length;
  let s = 0;
  for (let h = Math.max(ctx.first, n - HOURS_PER_WEEK); h < n; h++) {
    const w = weeklySamples(ctx, h, ctx.p.baselineWeeks);
    if (w.length === 0) continue;
    const m = median(w);
    s += Math.abs(logCount(ctx.v[h]!) - logCount(m)) * Math.sqrt(m + 1);
  }
  return s;
}

/** log(1 + x), with negative values (a SUM meter's corrections) read as 0. */
const logCount = (x: number) => Math.log1p(Math.max(0, x));

/** Index of the same clock hour `k` weeks before `i` (168 h ± a clock change), or -1 before the first event. */
function weekBack(ctx: Ctx, i: number, k: number): number {
  let j = i - k * HOURS_PER_WEEK;
  if (j < 0) return -1;
  if (ctx.off) j += ctx.off[i]! - ctx.off[j]!;
  return j >= ctx.first && j < i ? j : -1;
}

/** Same clock hour of the week in the previous `weeks` weeks, newest first, not before the first event. */
function weeklySamples(ctx: Ctx, i: number, weeks: number): number[] {
  const out: number[] = [];
  for (let k = 1; k <= weeks; k++) {
    const j = weekBack(ctx, i, k);
    if (j < 0) break;
    out.push(ctx.v[j]!);
  }
  return out;
}

/** Trimmed mean (largest left out) of the weekly samples of hours i-1, i, i+1: a low-volume series' mean, which its median understates. */
function pooledMean(ctx: Ctx, i: number): number {
  const xs: number[] = [];
  for (const h of [i - 1, i, i + 1]) {
    for (let k = 1; k <= ctx.p.baselineWeeks; k++) {
      const j = weekBack(ctx, h, k);
      if (j >= 0 && j < i) xs.push(ctx.v[j]!);
    }
  }
  if (xs.length < 3) return 0;
  xs.sort((a, b) => a - b);
  xs.pop();
  return xs.reduce((a, b) => a + b, 0) / xs.length;
}

/** What the recent hours say about the seasonal baseline: its level, and the customer's noise. */
export interface RecentLevel {
  /** Recent usage / seasonal median (weighted median over the window, shrunk towards 1). 1 = as usual. */
  level: number;
  /** The same over the last `SHORT_LEVEL_HOURS` only (a step becomes the new normal within a day); shrunk towards `level`. */
  shortLevel: number;
  /** Levels of the last `LEAK_DAYS` 24-hour blocks, oldest first (unshrunk; NaN where a block has too little weight). */
  dailyLevels: number[];
  /** Log-scale hour-to-hour spread around the baseline, counting noise removed; 0 if unknown. */
  spread: number;
  /**
   * Over-dispersion D ≥ 1: events come in clumps, so the count varies like D × a Poisson count of
   * mean λ/D. Estimated from how often the customer is silent (hours with mean λ are silent as often
   * as Poisson(λ/D)): zeros are plentiful and stable where the variance of a week of clumps is not.
   */
  dispersion: number;
}

/** D ≥ 1 such that Σ e^(−λ/D) over the hours' means equals the silent hours seen (clumped events leave more silent hours). */
function silenceDispersion(means: readonly number[], zeros: number): number {
  const expectedZeros = (d: number) => means.reduce((a, m) => a + Math.exp(-m / d), 0);
  if (means.length < MIN_SPREAD_HOURS || zeros <= expectedZeros(1) + 1) return 1;
  let lo = 1;
  let hi = DISPERSION_MAX;
  if (expectedZeros(hi) < zeros) return hi;
  for (let k = 0; k < 30; k++) {
    const mid = Math.sqrt(lo * hi);
    if (expectedZeros(mid) < zeros) lo = mid;
    else hi = mid;
  }
  return lo;
}

/**
 * The recent level and noise over the `levelWindowHours` hours before `end` (exclusive). Hours
 * without a seasonal sample, with a seasonal median of 0, or silent while normally at least
 * `minExpected` (a gap: judged separately, and it would drag the level to 0) are left out.
 */
export function recentLevel(v: readonly number[], end: number, first: number, params: DetectorParams): RecentLevel {
  return recentLevelOf({ series: { startMs: 0, values: [...v] }, v, first, p: resolve(params), off: undefined, localOff: undefined }, end);
}

function recentLevelOf(ctx: Ctx, end: number): RecentLevel {
  const { v, p, first } = ctx;
  if (p.levelWindowHours <= 0) return { level: 1, shortLevel: 1, dailyLevels: [], spread: 0, dispersion: 1 };
  const observed: number[] = [];
  const medians: number[] = [];
  const ratios: number[] = [];
  const hoursAt: number[] = [];
  let weight = 0;
  const zeroMeans: number[] = [];
  let zeros = 0;
  for (let h = Math.max(first, end - p.levelWindowHours); h < end; h++) {
    const s = weeklySamples(ctx, h, p.baselineWeeks);
    if (s.length === 0) continue;
    const mean = s.reduce((a, b) => a + b, 0) / s.length;
    if (mean >= 0.5 && mean <= DISPERSION_MAX_EXPECTED) {
      zeroMeans.push(mean);
      if (v[h] === 0) zeros++;
    }
    const m = median(s);
    if (!(m > 0) || (v[h] === 0 && m >= p.minExpected)) continue;
    observed.push(v[h]!);
    medians.push(m);
    ratios.push(v[h]! / m);
    hoursAt.push(h);
    weight += m;
  }
  // Dispersion: Σ(x − mean)² / Σ mean over the low-volume hours, the largest 1 % left out (a past spike), the samples' own noise (1/4) removed.
  const dispersion = silenceDispersion(zeroMeans, zeros);
  if (weight === 0) return { level: 1, shortLevel: 1, dailyLevels: [], spread: 0, dispersion };
  const prior = LEVEL_PRIOR_EXPECTED * p.minExpected * dispersion;
  const level = (weight * weightedMedian(ratios, medians) + prior) / (weight + prior);
  let shortLevel = level;
  const shortFrom = end - SHORT_LEVEL_HOURS;
  let k = hoursAt.length;
  while (k > 0 && hoursAt[k - 1]! >= shortFrom) k--;
  const shortWeight = medians.slice(k).reduce((a, b) => a + b, 0);
  if (shortWeight > 0) shortLevel = (shortWeight * weightedMedian(ratios.slice(k), medians.slice(k)) + prior * level) / (shortWeight + prior);
  const dailyLevels: number[] = [];
  for (let d = LEAK_DAYS - 1; d >= 0; d--) {
    const from = end - (d + 1) * HOURS_PER_DAY;
    const to = end - d * HOURS_PER_DAY;
    const idx = hoursAt.flatMap((h, j) => (h >= from && h < to ? [j] : []));
    const w = idx.reduce((a, j) => a + medians[j]!, 0);
    dailyLevels.push(w >= prior ? weightedMedian(idx.map((j) => ratios[j]!), idx.map((j) => medians[j]!)) : Number.NaN);
  }
  // Noise: differences of consecutive log residuals (a step moves one difference, not half of them), minus the Poisson part (≈ 1/λ per hour).
  const residuals: number[] = [];
  const poisson: number[] = [];
  for (let j = 0; j < observed.length; j++) {
    const e = level * medians[j]!;
    if (e < p.minExpected) {
      residuals.push(Number.NaN);
      continue;
    }
    residuals.push(logCount(observed[j]!) - logCount(e));
    poisson.push(1 / (e + 1));
  }
  // Lag 2 too: noise that spills across an hour boundary (a half-hour zone's local hour, a burst) makes neighbours alike.
  let sd = 0;
  for (let lag = 1; lag <= SPREAD_LAGS; lag++) {
    const diffs: number[] = [];
    for (let j = lag; j < residuals.length; j++) {
      const d = residuals[j]! - residuals[j - lag]!;
      if (Number.isFinite(d) && hoursAt[j]! - hoursAt[j - lag]! === lag) diffs.push(Math.abs(d));
    }
    if (diffs.length < MIN_SPREAD_HOURS) break;
    sd = Math.max(sd, (MAD_SCALE * median(diffs)) / Math.SQRT2);
  }
  if (sd === 0) return { level, shortLevel, dailyLevels, spread: 0, dispersion };
  return { level, shortLevel, dailyLevels, spread: Math.sqrt(Math.max(0, sd * sd - median(poisson))), dispersion };
}

/**
 * Variance-stabilising transform for counts with variance λ + c²λ² (Poisson noise plus a
 * multiplicative spread c): g(x) = (2/c)·asinh(c·√(x + 3/8)). Differences of g are z-scores: for
 * small counts g ≈ 2√(x + 3/8) (Anscombe's transform, the Poisson test), for large ones
 * g ≈ log(x)/c + const (the log-scale test), with one statistic across every volume. For
 * over-dispersed counts (variance D·λ + c²λ²) apply it to x/D and λ/D.
 */
export function stabilised(x: number, c: number): number {
  const r = Math.sqrt(Math.max(0, x) + 0.375);
  return c > 0 ? (2 / c) * Math.asinh(c * r) : 2 * r;
}

/** Local day number and day of week (0 = Sunday) of index `h`. */
function localDay(ctx: Ctx, h: number): { day: number; dow: number; hour: number } {
  const abs = Math.floor(ctx.series.startMs / HOUR_MS) + h + (ctx.localOff?.[h] ?? 0);
  const day = Math.floor(abs / HOURS_PER_DAY);
  return { day, dow: (((day + 4) % 7) + 7) % 7, hour: abs - day * HOURS_PER_DAY };
}

/** Median of the same clock hour on the weekend days of the last `baselineWeeks` weeks. */
function weekendExpected(ctx: Ctx, h: number): number | undefined {
  const xs: number[] = [];
  for (let d = 1; d <= 7 * ctx.p.baselineWeeks; d++) {
    let j = h - d * HOURS_PER_DAY;
    if (j < 0) break;
    if (ctx.off) j += ctx.off[h]! - ctx.off[j]!;
    if (j < ctx.first) break;
    const { dow } = localDay(ctx, j);
    if (dow === 0 || dow === 6) xs.push(ctx.v[j]!);
  }
  return xs.length >= 2 ? median(xs) : undefined;
}

/**
 * A weekday that, from local midnight to hour `i`, looks more like a weekend day than like the
 * weekday it is (a public holiday, an offsite): its low hours are not an emergency. Weekday
 * expectations are `expectedAt(h)`; the comparison is on the stabilised scale.
 */
function looksLikeDayOff(ctx: Ctx, i: number, expectedAt: (h: number) => number, dispersion: number, c: number, minHours: number): boolean {
  const today = localDay(ctx, i);
  if (today.dow === 0 || today.dow === 6) return false;
  const weekendNow = weekendExpected(ctx, i);
  if (weekendNow === undefined || expectedAt(i) < DAY_OFF_MIN_RATIO * weekendNow) return false; // this hour is no busier on weekdays: a low one is not a day off
  let observed = 0;
  let weekday = 0;
  let weekend = 0;
  let contrast = 0;
  for (let h = i - today.hour; h <= i; h++) {
    if (h < ctx.first) continue;
    const w = weekendExpected(ctx, h);
    if (w === undefined) return false;
    const e = expectedAt(h);
    observed += ctx.v[h]!;
    weekday += e;
    weekend += w;
    if (e >= ctx.p.activeHourExpected && e >= DAY_OFF_MIN_RATIO * w) contrast++;
  }
  if (contrast < minHours) return false; // one busy hour (a cron's run) is no evidence of a silent day off
  const g = (x: number) => stabilised(x / dispersion, c);
  return Math.abs(g(observed) - g(weekend)) < Math.abs(g(observed) - g(weekday));
}

/** The hour before, well above its own baseline, made up for it: with it, the two hours are no drop (a run that started early, a clock that moved). */
function shiftedFromPrevious(ctx: Ctx, i: number, level: number, p: Resolved): boolean {
  const s = weeklySamples(ctx, i - 1, p.baselineWeeks);
  if (s.length === 0) return false;
  const before = median(s) * level;
  const now = median(weeklySamples(ctx, i, p.baselineWeeks)) * level;
  return ctx.v[i - 1]! > SHIFT_EXCESS * before && (ctx.v[i - 1]! + ctx.v[i]!) * p.minRatio > before + now;
}

/** Median of the weekly samples of hour `h` (which may be a coming hour: its samples are past); NaN without any. */
function seasonalMedian(ctx: Ctx, h: number): number {
  const n = ctx.v.length;
  const s: number[] = [];
  for (let k = 1; k <= ctx.p.baselineWeeks; k++) {
    let j = h - k * HOURS_PER_WEEK;
    if (ctx.off) j += ctx.off[Math.min(h, n - 1)]! - ctx.off[Math.max(0, j)]!;
    if (j < ctx.first || j >= n) break;
    s.push(ctx.v[j]!);
  }
  return s.length ? median(s) : Number.NaN;
}

/** Hours [start, end] of a periodic job's run. */
interface Run {
  start: number;
  end: number;
}

/**
 * The cron run hour `i` belongs to, or whose last hour was `i - 1` (an overrun): a block of at most
 * `RUN_MAX_HOURS` hours whose seasonal medians are ≥ 1/`RUN_CONTRAST` of the block's busiest and
 * ≥ `minExpected` there, with quieter hours on both sides. Office days and always-on curves are
 * longer blocks: not runs.
 */
function runAround(ctx: Ctx, i: number): Run | undefined {
  const memo = new Map<number, number>();
  const E = (h: number) => {
    let e = memo.get(h);
    if (e === undefined) memo.set(h, (e = h < ctx.first ? 0 : seasonalMedian(ctx, h)));
    return e;
  };
  for (let c = i; c > i - RUN_MAX_HOURS - 1; c--) {
    const peak = E(c);
    if (!(peak >= ctx.p.minExpected)) continue;
    const q = peak / RUN_CONTRAST;
    let start = c;
    let end = c;
    while (start > c - RUN_MAX_HOURS && E(start - 1) >= q && E(start - 1) <= peak) start--;
    while (end < c + RUN_MAX_HOURS && E(end + 1) >= q && E(end + 1) <= peak) end++;
    if (end - start + 1 > RUN_MAX_HOURS || !(E(start - 1) < q) || !(E(end + 1) < q)) continue;
    if (start <= i && i <= end + 1) return { start, end };
  }
  return undefined;
}

/**
 * A periodic job is judged per run, not per hour: the hours from the one before the run (an early
 * start) to `i` (an overrun), observed against the weekly samples of the same window. Where its
 * events fall within the run's hours varies run to run; its total does not.
 */
function runWindow(ctx: Ctx, i: number, run: Run): { observed: number; samples: number[] } {
  const from = run.start - 1;
  let observed = 0;
  for (let h = from; h <= i; h++) observed += Math.max(0, ctx.v[h] ?? 0);
  const samples: number[] = [];
  for (let k = 1; k <= ctx.p.baselineWeeks; k++) {
    let sum = 0;
    for (let h = from; h <= i; h++) {
      const j = weekBack(ctx, h, k);
      if (j < 0) return { observed, samples };
      sum += Math.max(0, ctx.v[j]!);
    }
    samples.push(sum);
  }
  return { observed, samples };
}

/** A slow leak (a retry loop, a client whose volume compounds): usage rising day after day to near `minRatio`× the usual, raised as a spike. */
function leak(ctx: Ctx, recent: RecentLevel, m: number, describe: DescribeOptions): Detection | undefined {
  const d = recent.dailyLevels;
  if (d.length < LEAK_DAYS || !(m * d[0]! >= ctx.p.minExpected)) return undefined;
  for (let k = 1; k < d.length; k++) {
    const rise = d[k]! / d[k - 1]!;
    if (!(rise >= LEAK_DAILY_RISE[0] && rise <= LEAK_DAILY_RISE[1])) return undefined;
  }
  const now = d[d.length - 1]!;
  if (now < LEAK_LEVEL * ctx.p.minRatio) return undefined;
  const i = ctx.v.length - 1;
  const windowStartMs = ctx.series.startMs + (i + 1 - LEAK_DAYS * HOURS_PER_DAY) * HOUR_MS;
  const windowEndMs = ctx.series.startMs + (i + 1) * HOUR_MS;
  return {
    kind: 'spike',
    severity: 'warning',
    score: now,
    windowStartMs,
    windowEndMs,
    observed: ctx.v[i]!,
    baseline: m,
    spread: 0,
    message: `${describe.unit} have risen every day for ${LEAK_DAYS} days, to ${now.toFixed(1)}× the usual: ${formatExact(ctx.v[i]!)} in the hour to ${clockTime(windowEndMs, describe.timeZone)}, usually ${formatApprox(m)} at this hour`,
  };
}

function judgeLevel(ctx: Ctx, describe: DescribeOptions): Detection | undefined {
  const { v, p, series } = ctx;
  const i = v.length - 1;
  const hourSamples = weeklySamples(ctx, i, p.baselineWeeks);
  if (hourSamples.length < MIN_LEVEL_WEEKS) return undefined; // less than two weeks of history: no spikes or drops
  const run = runAround(ctx, i);
  const window = run ? runWindow(ctx, i, run) : undefined;
  const samples = window && window.samples.length >= MIN_LEVEL_WEEKS ? window.samples : hourSamples;
  const observed = samples === hourSamples ? v[i]! : window!.observed;
  const m = median(samples);
  const recent = recentLevelOf(ctx, i);
  const D = recent.dispersion;
  // A spike is judged against the higher of the week's and the day's level (after a step up, the new normal), a drop against the lower.
  const expectedUp = Math.max(m, samples === hourSamples ? pooledMean(ctx, i) : 0) * Math.max(recent.level, recent.shortLevel);
  const expectedDown = m * Math.min(recent.level, recent.shortLevel);
  // Week-to-week spread at this hour, counting noise removed (it is in the transform already).
  const hourMad = scaledMad(samples.map(logCount));
  const hourSpread = Math.sqrt(Math.max(0, hourMad * hourMad - D / (m + 1)));
  const c = Math.max(hourSpread, recent.spread, p.spreadFloor);
  const z = (e: number) => stabilised(observed / D, c) - stabilised(e / D, c);
  let kind: 'spike' | 'drop';
  let ratio: number;
  let expected: number;
  if (observed >= p.minRatio * expectedUp && z(expectedUp) >= p.zThreshold) {
    kind = 'spike';
    expected = expectedUp;
    ratio = expected > 0 ? observed / expected : Number.POSITIVE_INFINITY;
  } else if (expectedDown / D >= p.minExpected && observed * p.minRatio <= expectedDown && z(expectedDown) <= -p.zThreshold && (run || !shiftedFromPrevious(ctx, i, expectedDown / m, p))) {
    if (looksLikeDayOff(ctx, i, (h) => median(weeklySamples(ctx, h, p.baselineWeeks)) * recent.level, D, c, 1)) return undefined;
    kind = 'drop';
    expected = expectedDown;
    ratio = expected / observed;
  } else {
    return leak(ctx, recent, m, describe);
  }
  const score = Math.abs(z(expected));
  const severity: Severity = score >= 2 * p.zThreshold && ratio >= 2 * p.minRatio ? 'critical' : 'warning';
  const spread = Math.sqrt(D * expected + (c * expected) ** 2);
  const windowEndMs = series.startMs + (i + 1) * HOUR_MS;
  const windowStartMs = run && samples !== hourSamples ? series.startMs + Math.min(run.start, i) * HOUR_MS : windowEndMs - HOUR_MS;
  const span = windowEndMs - windowStartMs > HOUR_MS ? `in the run from ${clockTime(windowStartMs, describe.timeZone)} to ${clockTime(windowEndMs, describe.timeZone)}` : `in the hour to ${clockTime(windowEndMs, describe.timeZone)}`;
  return {
    kind,
    severity,
    score,
    windowStartMs,
    windowEndMs,
    observed,
    baseline: expected,
    spread,
    message: `${formatExact(observed)} ${describe.unit} ${span}, usually ${expected > 0 ? `${formatApprox(expected)} ± ${formatApprox(spread)}` : 'none'} at this hour`,
  };
}

/** Hour `h` is in (or just after) a cron run whose window so far is no drop: the run happened, its silent hours are its end. */
function runHappened(ctx: Ctx, h: number, level: number): boolean {
  const run = runAround(ctx, h);
  if (!run) return false;
  const w = runWindow(ctx, h, run);
  return w.samples.length >= MIN_LEVEL_WEEKS && w.observed * ctx.p.minRatio > median(w.samples) * level;
}

function judgeGap(ctx: Ctx, describe: DescribeOptions): Detection | undefined {
  const { v, p, first, series } = ctx;
  const n = v.length;
  let runStart = n;
  while (runStart > first && v[runStart - 1] === 0) runStart--;
  let hours = n - runStart;
  const { level, dispersion: D } = recentLevelOf(ctx, runStart);
  let expected = 0;
  let active = 0;
  let fallback = false;
  const expectedAt: number[] = [];
  for (let h = runStart; h < n; h++) {
    const s = weeklySamples(ctx, h, p.baselineWeeks);
    let e: number;
    if (runHappened(ctx, h, level)) {
      e = 0; // the end of a run that happened (its overrun hour is empty as often as not)
    } else if (s.length > 0) {
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
    expectedAt.push(e);
    expected += e;
    if (e >= p.activeHourExpected) active++;
  }
  const strict = fallback ? 2 : 1;
  const long = hours >= p.gapHours && active >= strict * p.gapHours && expected / D >= strict * p.gapMinExpected;
  // The last silent hour alone is an outage where it is always busy: every weekly sample well above counting noise (a busy customer's hour, a cron's run).
  const lastSamples = weeklySamples(ctx, n - 1, p.baselineWeeks);
  const lastExpected = lastSamples.length ? median(lastSamples) * level : 0;
  const outage = !fallback && !runHappened(ctx, n - 1, level) && lastSamples.length >= MIN_LEVEL_WEEKS && lastExpected / D >= p.outageMinExpected && (Math.min(...lastSamples) * level) / D >= p.outageMinExpected / 2;
  if (!long && !outage) return undefined;
  if (!long) {
    runStart = n - 1;
    hours = 1;
    expected = lastExpected;
    expectedAt.splice(0, expectedAt.length, lastExpected);
  }
  // Silence on a day that looks like a weekend day, where a weekend day would plausibly be silent too: a day off.
  if (!fallback) {
    let weekendRun = 0;
    for (let h = runStart; h < n; h++) weekendRun += weekendExpected(ctx, h) ?? Number.POSITIVE_INFINITY;
    if (weekendRun / D < p.gapMinExpected && looksLikeDayOff(ctx, n - 1, (h) => (h >= runStart ? expectedAt[h - runStart]! : median(weeklySamples(ctx, h, p.baselineWeeks)) * level), D, p.spreadFloor, DAY_OFF_MIN_HOURS)) return undefined;
  }
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
    spread: Math.sqrt(D * expected),
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
