/**
 * Seeded generator of a labelled evaluation set for the anomaly detector: several weeks of hourly
 * usage for a few hundred customers, with spikes, drops and gaps injected at known hours.
 *
 * Each customer has
 * - a volume: the mean per hour at its busiest weekday hours, log-uniform in 1..50,000;
 * - a shape (in its own time zone, UTC-8 … UTC+9): `business` (a working-day bump from ~08:00 to
 *   ~19:00, nights at 3-20 %, weekends at 10-60 %), `always-on` (a daily cosine of ±20-60 %
 *   around an evening peak, weekends at 70-130 %) or `batch` (a flat 10-40 % floor and a 1-3 h
 *   burst at a fixed hour every day);
 * - a trend: 40 % grow by up to +5 %/week, 10 % shrink by up to 3 %/week;
 * - noise: a day-to-day level factor (lognormal, σ 2-10 %) and an hour-to-hour factor (lognormal,
 *   σ 3-20 %), then Poisson counting noise: overdispersed like real usage;
 * - 25 % are new: they start at a random hour between the end of week 1 and the middle of the
 *   last week, ramping from 30 % to full volume over three days (zeros before).
 *
 * Anomalies are injected only in the last `anomalyWeeks` weeks (the window the evaluation scans)
 * and never in a customer's first four weeks, so a baseline exists: spikes (3-10× for 1-3 h),
 * drops (to 10-30 % for 2-8 h) and gaps (0 for 3-12 h); 0-3 per customer, at least a day apart.
 * They start only at hours where the customer's noise-free mean is at least `minLabelExpected`
 * events (20) in that hour and the next: a 3× "spike" on 1 event an hour is counting noise, not
 * an anomaly (the issue's own definition of low volume), so labelling it would measure nothing.
 * Low-volume customers therefore get no anomalies, and every detection on them is a false
 * positive.
 */

export const AnomalyLabels = ['spike', 'drop', 'gap'] as const;
export type AnomalyLabel = (typeof AnomalyLabels)[number];

export const Shapes = ['business', 'always-on', 'batch'] as const;
export type Shape = (typeof Shapes)[number];

export interface EvalCustomer {
  id: string;
  shape: Shape;
  /** Mean per hour at the busiest weekday hours, before trend and noise. */
  volume: number;
  tzOffsetHours: number;
  growthPerWeek: number;
  /** Hour index of the first event (0 for customers older than the data set). */
  startHour: number;
  /** Hourly counts, index 0 = `EvalSet.startMs`. */
  values: number[];
}

export interface InjectedAnomaly {
  customer: string;
  kind: AnomalyLabel;
  /** First anomalous hour (index into `values`); the anomaly covers [startHour, startHour + hours). */
  startHour: number;
  hours: number;
  /** Multiplier of the mean (spike, drop); 0 for a gap. */
  factor: number;
  /** Noise-free mean of the customer in the first anomalous hour. */
  expectedAtStart: number;
}

export interface GeneratorOptions {
  seed: number;
  customers: number;
  weeks: number;
  /** Anomalies are injected in the last this-many weeks only. */
  anomalyWeeks: number;
  /** Minimum noise-free mean (events/h) at an anomaly's first two hours. */
  minLabelExpected: number;
  /** UTC ms of hour 0 (a Monday 00:00 UTC). */
  startMs: number;
}

export const DEFAULT_GENERATOR_OPTIONS: Omit<GeneratorOptions, 'seed'> = {
  customers: 300,
  weeks: 6,
  anomalyWeeks: 2,
  minLabelExpected: 20,
  startMs: Date.UTC(2026, 0, 5), // Monday
};

export interface EvalSet {
  options: GeneratorOptions;
  hours: number;
  customers: EvalCustomer[];
  anomalies: InjectedAnomaly[];
}

const WEEK = 168;
const DAY = 24;
const MIN_HISTORY_WEEKS = 4;

/** sfc32, seeded through splitmix32: small, fast, good enough for simulation. */
export function rng(seed: number): () => number {
  let s = seed >>> 0;
  const split = () => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return (z ^ (z >>> 16)) >>> 0;
  };
  let a = split();
  let b = split();
  let c = split();
  let d = split();
  return () => {
    const t = (((a + b) >>> 0) + d) >>> 0;
    d = (d + 1) >>> 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) >>> 0;
    c = (c << 21) | (c >>> 11);
    c = (c + t) >>> 0;
    return t / 4294967296;
  };
}

/** Seeded draws for the evaluation sets (both generators). */
export class Random {
  private spare: number | undefined;
  constructor(readonly next: () => number) {}
  uniform(lo: number, hi: number): number {
    return lo + (hi - lo) * this.next();
  }
  int(lo: number, hi: number): number {
    return Math.floor(this.uniform(lo, hi + 1));
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.next() * xs.length)]!;
  }
  weighted<T extends { weight: number }>(xs: readonly T[]): T {
    let u = this.next() * xs.reduce((s, x) => s + x.weight, 0);
    for (const x of xs) if ((u -= x.weight) < 0) return x;
    return xs[xs.length - 1]!;
  }
  logUniform(lo: number, hi: number): number {
    return Math.exp(this.uniform(Math.log(lo), Math.log(hi)));
  }
  normal(): number {
    if (this.spare !== undefined) {
      const s = this.spare;
      this.spare = undefined;
      return s;
    }
    let u = 0;
    while (u === 0) u = this.next();
    const r = Math.sqrt(-2 * Math.log(u));
    const th = 2 * Math.PI * this.next();
    this.spare = r * Math.sin(th);
    return r * Math.cos(th);
  }
  /** Lognormal factor with mean 1. */
  lognormal(sigma: number): number {
    return Math.exp(sigma * this.normal() - (sigma * sigma) / 2);
  }
  poisson(lambda: number): number {
    if (!(lambda > 0)) return 0;
    if (lambda > 40) return Math.max(0, Math.round(lambda + Math.sqrt(lambda) * this.normal()));
    const l = Math.exp(-lambda);
    let k = 0;
    let p = this.next();
    while (p > l) {
      k++;
      p *= this.next();
    }
    return k;
  }
  /** Geometric on 1, 2, …, with the given mean. */
  clumpSize(mean: number): number {
    if (mean <= 1) return 1;
    let u = 0;
    while (u === 0) u = this.next();
    return 1 + Math.floor(Math.log(u) / Math.log(1 - 1 / mean));
  }
}

interface Profile {
  shape: Shape;
  volume: number;
  tzOffsetHours: number;
  growthPerWeek: number;
  startHour: number;
  daySigma: number;
  hourSigma: number;
  /** Relative level (peak weekday hour = 1) by local hour of the week. */
  weekShape: number[];
}

function businessDay(localHour: number, opensAt: number, closesAt: number, night: number): number {
  // Ramp up over the two hours before opening, down over the three after closing.
  let bump: number;
  if (localHour >= opensAt && localHour < closesAt) bump = 1;
  else if (localHour >= opensAt - 2 && localHour < opensAt) bump = (localHour - (opensAt - 2) + 1) / 3;
  else if (localHour >= closesAt && localHour < closesAt + 3) bump = 1 - (localHour - closesAt + 1) / 4;
  else bump = 0;
  return night + (1 - night) * bump;
}

function makeProfile(r: Random, hours: number): Profile {
  const u = r.next();
  const shape: Shape = u < 0.5 ? 'business' : u < 0.85 ? 'always-on' : 'batch';
  const weekShape = new Array<number>(WEEK).fill(0);
  if (shape === 'business') {
    const night = r.uniform(0.03, 0.2);
    const weekend = r.uniform(0.1, 0.6);
    const opensAt = r.int(7, 10);
    const closesAt = opensAt + r.int(8, 10);
    for (let h = 0; h < WEEK; h++) weekShape[h] = businessDay(h % DAY, opensAt, closesAt, night) * (h >= 5 * DAY ? weekend : 1);
  } else if (shape === 'always-on') {
    const amp = r.uniform(0.2, 0.6);
    const peak = r.uniform(12, 22);
    const weekend = r.uniform(0.7, 1.3);
    for (let h = 0; h < WEEK; h++) weekShape[h] = ((1 + amp * Math.cos((2 * Math.PI * ((h % DAY) - peak)) / DAY)) / (1 + amp)) * (h >= 5 * DAY ? weekend : 1);
  } else {
    const floor = r.uniform(0.1, 0.4);
    const at = r.int(0, 23);
    const len = r.int(1, 3);
    const weekend = r.uniform(0.5, 1);
    for (let h = 0; h < WEEK; h++) {
      const d = (h % DAY) - at;
      const inBurst = (d >= 0 && d < len) || d + DAY < len;
      weekShape[h] = (inBurst ? 1 : floor) * (h >= 5 * DAY ? weekend : 1);
    }
  }
  const g = r.next();
  const growthPerWeek = g < 0.4 ? r.uniform(0, 0.05) : g < 0.5 ? -r.uniform(0, 0.03) : 0;
  const isNew = r.next() < 0.25;
  return {
    shape,
    volume: Math.exp(r.uniform(0, Math.log(50_000))),
    tzOffsetHours: r.pick([-8, -5, 0, 1, 2, 9]),
    growthPerWeek,
    startHour: isNew ? r.int(WEEK, hours - WEEK / 2) : 0,
    daySigma: r.uniform(0.02, 0.1),
    hourSigma: r.uniform(0.03, 0.2),
    weekShape,
  };
}

/** Noise-free mean of a profile at hour `t` (trend, ramp and seasonality; no noise, no anomalies). */
function meanAt(p: Profile, t: number): number {
  if (t < p.startHour) return 0;
  const local = (((t + p.tzOffsetHours) % WEEK) + WEEK) % WEEK;
  const ramp = Math.min(1, 0.3 + (0.7 * (t - p.startHour)) / 72);
  return p.volume * p.weekShape[Math.floor(local)]! * Math.pow(1 + p.growthPerWeek, t / WEEK) * ramp;
}

export function generateEvalSet(seed: number, overrides: Partial<Omit<GeneratorOptions, 'seed'>> = {}): EvalSet {
  const options: GeneratorOptions = { ...DEFAULT_GENERATOR_OPTIONS, ...overrides, seed };
  const r = new Random(rng(seed));
  const hours = options.weeks * WEEK;
  const windowStart = hours - options.anomalyWeeks * WEEK;
  const customers: EvalCustomer[] = [];
  const anomalies: InjectedAnomaly[] = [];
  for (let c = 0; c < options.customers; c++) {
    const id = `c${String(c).padStart(3, '0')}`;
    const p = makeProfile(r, hours);
    const mean = Array.from({ length: hours }, (_, t) => meanAt(p, t));

    // Anomalies: placed on the noise-free mean, at least a day apart, in the scanned window only.
    const mine: InjectedAnomaly[] = [];
    const eligibleFrom = Math.max(windowStart, p.startHour + MIN_HISTORY_WEEKS * WEEK);
    const u = r.next();
    const count = u < 0.2 ? 0 : u < 0.55 ? 1 : u < 0.85 ? 2 : 3;
    for (let k = 0; k < count && eligibleFrom < hours - 3; k++) {
      const v = r.next();
      const kind: AnomalyLabel = v < 0.4 ? 'spike' : v < 0.7 ? 'drop' : 'gap';
      const len = kind === 'spike' ? r.int(1, 3) : kind === 'drop' ? r.int(2, 8) : r.int(3, 12);
      const factor = kind === 'spike' ? r.uniform(3, 10) : kind === 'drop' ? r.uniform(0.1, 0.3) : 0;
      for (let attempt = 0; attempt < 100; attempt++) {
        const start = r.int(eligibleFrom, hours - 3);
        if (mean[start]! < options.minLabelExpected || (mean[start + 1] ?? 0) < options.minLabelExpected) continue;
        if (mine.some((a) => start < a.startHour + a.hours + DAY && a.startHour < start + len + DAY)) continue;
        mine.push({ customer: id, kind, startHour: start, hours: Math.min(len, hours - start), factor, expectedAtStart: mean[start]! });
        break;
      }
    }
    for (const a of mine) for (let t = a.startHour; t < a.startHour + a.hours; t++) mean[t] = mean[t]! * a.factor;
    anomalies.push(...mine.sort((a, b) => a.startHour - b.startHour));

    // Noise: a level per day, a factor per hour, then counting noise.
    const values = new Array<number>(hours);
    let dayFactor = 1;
    for (let t = 0; t < hours; t++) {
      if (t % DAY === 0) dayFactor = r.lognormal(p.daySigma);
      values[t] = mean[t]! > 0 ? r.poisson(mean[t]! * dayFactor * r.lognormal(p.hourSigma)) : 0;
    }
    customers.push({ id, shape: p.shape, volume: p.volume, tzOffsetHours: p.tzOffsetHours, growthPerWeek: p.growthPerWeek, startHour: p.startHour, values });
  }
  return { options, hours, customers, anomalies };
}
