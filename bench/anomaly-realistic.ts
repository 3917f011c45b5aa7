/**
 * Seeded generator of realistic, labelled hourly usage for the anomaly detector: customers as
 * they behave, not as the detector assumes (bench/ANOMALY-REALISTIC.md says why each behaviour is
 * realistic). Evaluated by `anomaly-realistic-eval.ts`:
 *
 *   node --import tsx bench/anomaly-realistic-eval.ts                  # seeds 1 (tuning) and 2, 3, 4; writes bench/results/anomaly-realistic.{md,json}
 *   node --import tsx bench/anomaly-realistic-eval.ts --customers 100 --seeds 5 --out /tmp/x   # smaller, other seed, elsewhere
 *   node --import tsx bench/anomaly-realistic.ts --seed 2 --customer r017 # one customer's series and labels, as CSV on stdout
 *
 * Hour 0 is Monday 2026-08-17 00:00 UTC; 12 weeks to 2026-11-09, the last 5 scanned. Each customer
 * lives in an IANA zone (local time from Intl, so the 2026 clock changes are the real ones: Adelaide
 * 4 Oct, Europe 25 Oct, North America 1 Nov) and keeps that region's 2026 public holidays.
 * Customer types: `business` (office hours, weekends, holidays, quiet days), `always-on` (a
 * consumer day curve in local time), `batch` (cron runs in one or a few fixed hours, stray
 * trickle, runs overrunning by minutes), `bursty` (low volume in over-dispersed clumps; never
 * labelled), `step` (business or always-on with one permanent ×2 or ×½ step), `steady` (what the
 * detector assumes: a fixed UTC offset, no holidays; the control group).
 *
 * Labels (in the scanned weeks only): spike, drop, gap (incl. one-hour total outages of
 * high-volume customers), leak (+~10 %/day for a week, then 5×; labelled from ~2×),
 * missed_run, and level_shift (the first day of a step; later hours are normal).
 */
import { Random, rng } from './anomaly-data.ts';

export const CustomerTypes = ['business', 'always-on', 'batch', 'bursty', 'step', 'steady'] as const;
export type CustomerType = (typeof CustomerTypes)[number];

export const RealisticLabelKinds = ['spike', 'drop', 'gap', 'leak', 'missed_run', 'level_shift'] as const;
export type RealisticLabelKind = (typeof RealisticLabelKinds)[number];

export interface RealisticLabel {
  customer: string;
  type: CustomerType;
  kind: RealisticLabelKind;
  /** First labelled hour (index into `values`); the label covers [startHour, endHour). */
  startHour: number;
  endHour: number;
  hours: number;
  /** First hour the anomaly changes usage (a leak's ramp starts before its label); = startHour otherwise. */
  effectStartHour: number;
  /** Multiplier of normal usage (spike, drop, oversized run, leak at its worst, step); 0 for a gap or missed run. */
  factor: number;
  /** Noise-free normal mean in the first labelled hour (for a step: the new level). */
  expectedAtStart: number;
  note: string;
}

export interface RealisticCustomer {
  id: string;
  type: CustomerType;
  meter: string;
  timeZone: string;
  region: string;
  /** Mean per hour at the busiest normal hours (batch: events per run). */
  volume: number;
  /** Local dates this customer takes off on a weekday: observed public holidays and its own quiet days. */
  daysOff: string[];
  detail: string;
  /** Batch: the zone its cron runs in (its own, or UTC). */
  scheduleTimeZone?: string;
  /** Hourly counts, index 0 = `RealisticSet.options.startMs`. */
  values: number[];
}

export interface RealisticOptions {
  seed: number;
  customers: number;
  weeks: number;
  /** The last this-many weeks are scanned and carry the labels. */
  scanWeeks: number;
  /** Minimum noise-free mean (events/h) at a spike's, drop's or gap's first two hours, a missed or oversized run's first hour. */
  minLabelExpected: number;
  /** UTC ms of hour 0. The holiday table is for 2026: keep the default. */
  startMs: number;
}

export const DEFAULT_REALISTIC_OPTIONS: Omit<RealisticOptions, 'seed'> = {
  customers: 300,
  weeks: 12,
  scanWeeks: 5,
  minLabelExpected: 20,
  startMs: Date.UTC(2026, 7, 17), // Monday
};

export interface ClockChange {
  timeZone: string;
  atUtc: string;
  fromOffsetMinutes: number;
  toOffsetMinutes: number;
}

export interface RealisticSet {
  options: RealisticOptions;
  hours: number;
  scanStartHour: number;
  customers: RealisticCustomer[];
  labels: RealisticLabel[];
  /** Clock changes inside the data, per zone used. */
  clockChanges: ClockChange[];
}

const HOUR_MS = 3_600_000;
const DAY_MS = 86_400_000;
const DAY = 24;
const WEEK = 168;

/** [local date, name, share of customers that take the day off]. Checked against the date-holidays package's 2026 data. */
type Holiday = readonly [string, string, number];
const US: Holiday[] = [
  ['2026-09-07', 'Labor Day', 0.95],
  ['2026-10-12', "Columbus Day / Indigenous Peoples' Day (banks, government; most companies work)", 0.3],
];

interface Zone {
  timeZone: string;
  region: string;
  weight: number;
  holidays: Holiday[];
}

/** Zones of the realistic customers, with their region's weekday public holidays between 17 Aug and 9 Nov 2026. */
export const ZONES: readonly Zone[] = [
  { timeZone: 'America/New_York', region: 'US', weight: 14, holidays: US },
  { timeZone: 'America/Chicago', region: 'US', weight: 5, holidays: US },
  { timeZone: 'America/Los_Angeles', region: 'US', weight: 9, holidays: US },
  {
    timeZone: 'America/St_Johns',
    region: 'CA-NL',
    weight: 6,
    holidays: [
      ['2026-09-07', 'Labour Day', 0.95],
      ['2026-09-30', 'National Day for Truth and Reconciliation (federal employers)', 0.2],
      ['2026-10-12', 'Thanksgiving (statutory in most provinces, not in NL)', 0.5],
    ],
  },
  {
    timeZone: 'America/Sao_Paulo',
    region: 'BR',
    weight: 5,
    holidays: [
      ['2026-09-07', 'Dia da Independência', 0.95],
      ['2026-10-12', 'Nossa Senhora Aparecida', 0.95],
      ['2026-11-02', 'Finados', 0.95],
    ],
  },
  { timeZone: 'Europe/London', region: 'GB-ENG', weight: 10, holidays: [['2026-08-31', 'Summer bank holiday', 0.95]] },
  { timeZone: 'Europe/Berlin', region: 'DE', weight: 9, holidays: [] }, // 3 Oct 2026 is a Saturday
  { timeZone: 'Europe/Madrid', region: 'ES', weight: 4, holidays: [['2026-10-12', 'Fiesta Nacional de España', 0.95]] },
  { timeZone: 'Asia/Kolkata', region: 'IN', weight: 7, holidays: [['2026-10-02', 'Gandhi Jayanti', 0.95]] },
  {
    timeZone: 'Asia/Tokyo',
    region: 'JP',
    weight: 6,
    holidays: [
      ['2026-09-21', 'Respect for the Aged Day', 0.95],
      ['2026-09-22', "Citizens' Holiday", 0.95],
      ['2026-09-23', 'Autumnal Equinox Day', 0.95],
      ['2026-10-12', 'Sports Day', 0.95],
      ['2026-11-03', 'Culture Day', 0.95],
    ],
  },
  { timeZone: 'Australia/Adelaide', region: 'AU-SA', weight: 6, holidays: [['2026-10-05', 'Labour Day', 0.95]] },
  { timeZone: 'Australia/Sydney', region: 'AU-NSW', weight: 4, holidays: [['2026-10-05', 'Labour Day', 0.95]] },
  { timeZone: 'UTC', region: '-', weight: 2, holidays: [] },
];

/** The control group's zones: the fixed offsets of anomaly-data.ts (UTC-8, -5, 0, +1, +2, +9; Etc/GMT signs are inverted). */
const FIXED_ZONES = ['Etc/GMT+8', 'Etc/GMT+5', 'UTC', 'Etc/GMT-1', 'Etc/GMT-2', 'Etc/GMT-9'] as const;


// ---------------------------------------------------------------------------------------------
// Local time

const formatters = new Map<string, Intl.DateTimeFormat>();

/** The zone's offset from UTC at `utcMs`, in minutes, from Intl (the ICU time zone data Node ships). */
export function offsetMinutes(timeZone: string, utcMs: number): number {
  let f = formatters.get(timeZone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', { timeZone, hourCycle: 'h23', year: 'numeric', month: 'numeric', day: 'numeric', hour: 'numeric', minute: 'numeric' });
    formatters.set(timeZone, f);
  }
  const p: Record<string, number> = {};
  for (const x of f.formatToParts(utcMs)) if (x.type !== 'literal') p[x.type] = Number(x.value);
  const local = Date.UTC(p.year!, p.month! - 1, p.day!, p.hour!, p.minute!);
  return Math.round((local - Math.floor(utcMs / 60_000) * 60_000) / 60_000);
}

/** UTC ms of a local wall-clock time (ms since the epoch as if the zone were UTC). */
function localToUtc(timeZone: string, localMs: number): number {
  const guess = localMs - offsetMinutes(timeZone, localMs) * 60_000;
  return localMs - offsetMinutes(timeZone, guess) * 60_000;
}

/** Offsets at :00 and :30 of every UTC hour of the data (clock changes fall on a full or half hour in UTC). */
interface Clock {
  at00: Int16Array;
  at30: Int16Array;
}

const clocks = new Map<string, Clock>();

function clockOf(timeZone: string, startMs: number, hours: number): Clock {
  const key = `${timeZone}|${startMs}|${hours}`;
  let c = clocks.get(key);
  if (!c) {
    c = { at00: new Int16Array(hours), at30: new Int16Array(hours) };
    for (let t = 0; t < hours; t++) {
      c.at00[t] = offsetMinutes(timeZone, startMs + t * HOUR_MS);
      c.at30[t] = offsetMinutes(timeZone, startMs + t * HOUR_MS + 30 * 60_000);
    }
    clocks.set(key, c);
  }
  return c;
}

function clockChanges(timeZone: string, startMs: number, hours: number): ClockChange[] {
  const c = clockOf(timeZone, startMs, hours);
  const out: ClockChange[] = [];
  let prev = c.at00[0]!;
  for (let t = 0; t < hours; t++) {
    for (const [minute, off] of [[0, c.at00[t]!], [30, c.at30[t]!]] as const) {
      if (off !== prev) out.push({ timeZone, atUtc: new Date(startMs + t * HOUR_MS + minute * 60_000).toISOString(), fromOffsetMinutes: prev, toOffsetMinutes: off });
      prev = off;
    }
  }
  return out;
}

const dayNumber = (isoDate: string) => Date.parse(`${isoDate}T00:00:00Z`) / DAY_MS;
const isoDate = (day: number) => new Date(day * DAY_MS).toISOString().slice(0, 10);

/** A local moment: the local day (days since 1970-01-01), its weekday (0 = Sunday), the hour of the day as a fraction. */
interface LocalTime {
  day: number;
  weekday: number;
  hour: number;
}

/**
 * Mean of `level` over the UTC hour t, sampled at four quarter-hours in local time: a half-hour
 * zone's UTC hour is half of two local hours, and the hour of a clock change is cut where it
 * happens.
 */
function hourMean(clock: Clock, startMs: number, t: number, level: (l: LocalTime) => number): number {
  let sum = 0;
  for (let q = 0; q < 4; q++) {
    const minute = q * 15 + 7.5;
    const off = q < 2 ? clock.at00[t]! : clock.at30[t]!;
    const local = startMs + t * HOUR_MS + (minute + off) * 60_000;
    const day = Math.floor(local / DAY_MS);
    sum += level({ day, weekday: (((day + 4) % 7) + 7) % 7, hour: (local - day * DAY_MS) / HOUR_MS });
  }
  return sum / 4;
}

// ---------------------------------------------------------------------------------------------
// Daily shapes (peak of a normal weekday = 1)

const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));

interface OfficeHours {
  opensAt: number;
  closesAt: number;
  night: number;
  /** Peak of a weekend or day off, relative to a weekday's. */
  offDayPeak: number;
  lunchDip: number;
}

function officeHours(r: Random): OfficeHours {
  const opensAt = r.uniform(7, 10);
  return { opensAt, closesAt: opensAt + r.uniform(8, 10), night: r.uniform(0.03, 0.2), offDayPeak: r.uniform(0.05, 0.5), lunchDip: r.uniform(0, 0.2) };
}

/** Office hours: a smooth opening and closing, a lunch dip, Monday a little busier and Friday quieter; days off at the weekend's level. */
function officeLevel(o: OfficeHours, l: LocalTime, off: boolean): number {
  const open = sigmoid((l.hour - o.opensAt) / 0.5) * sigmoid((o.closesAt - l.hour) / 0.8);
  if (off) return o.night + Math.max(0, o.offDayPeak - o.night) * open;
  const lunch = 1 - o.lunchDip * Math.exp(-(((l.hour - 12.75) / 0.7) ** 2));
  const weekday = l.weekday === 1 ? 1.05 : l.weekday === 5 ? 0.9 : 1;
  return (o.night + (1 - o.night) * open * lunch) * weekday;
}

interface ConsumerDay {
  trough: number;
  peakHour: number;
  offDayFactor: number;
}

/** People's day in local time: lowest before dawn, highest in the evening, a smaller midday hump; days off start an hour later. */
function consumerLevel(c: ConsumerDay, l: LocalTime, off: boolean): number {
  const h = off ? l.hour - 1 : l.hour;
  const x = (2 * Math.PI * (h - c.peakHour)) / DAY;
  const raw = 0.8 * 0.5 * (1 + Math.cos(x)) + 0.2 * 0.5 * (1 + Math.cos(2 * x));
  return (c.trough + (1 - c.trough) * raw) * (off ? c.offDayFactor : 1);
}

// ---------------------------------------------------------------------------------------------
// Generation

interface Draft {
  id: string;
  type: CustomerType;
  zone: Zone;
  timeZone: string;
  /** Local day numbers off (public holidays kept and quiet days). */
  off: Set<number>;
  labels: RealisticLabel[];
  /** Spans [from, to) no other label may come within a day of. */
  busy: Array<[number, number]>;
}

interface Ctx {
  r: Random;
  o: RealisticOptions;
  hours: number;
  scanStart: number;
}

function pickType(r: Random): CustomerType {
  const u = r.next();
  return u < 0.28 ? 'business' : u < 0.48 ? 'always-on' : u < 0.63 ? 'batch' : u < 0.78 ? 'bursty' : u < 0.88 ? 'step' : 'steady';
}

/** Public holidays the customer keeps, and 0-3 quiet weekdays of its own (an offsite, a company day off, a bridge day). */
function daysOff(ctx: Ctx, zone: Zone, keepsHolidays: number, quietDays: boolean): Set<number> {
  const { r, o, hours } = ctx;
  const off = new Set<number>();
  for (const [date, , share] of zone.holidays) if (r.chance(share * keepsHolidays)) off.add(dayNumber(date));
  if (quietDays) {
    const first = Math.floor(o.startMs / DAY_MS) + 1;
    const last = Math.floor((o.startMs + hours * HOUR_MS) / DAY_MS) - 1;
    const n = r.pick([0, 0, 1, 1, 1, 2, 3]);
    for (let k = 0; k < n; k++) {
      const d = r.int(first, last);
      const wd = (d + 4) % 7;
      if (wd !== 0 && wd !== 6) off.add(d);
    }
  }
  return off;
}

function overlapsBusy(d: Draft, from: number, to: number): boolean {
  return d.busy.some(([a, b]) => from < b + DAY && a < to + DAY);
}

function addLabel(d: Draft, l: Omit<RealisticLabel, 'customer' | 'type' | 'hours'>, busyFrom = l.effectStartHour, busyTo = l.endHour): void {
  d.labels.push({ customer: d.id, type: d.type, hours: l.endHour - l.startHour, ...l });
  d.busy.push([busyFrom, busyTo]);
}

/** A start hour in [from, to] where `base` is at least `min` in the first two hours, clear of other labels; undefined after 200 tries. */
function findStart(ctx: Ctx, d: Draft, base: Float64Array, from: number, to: number, len: number, min: number): number | undefined {
  for (let k = 0; k < 200; k++) {
    const s = ctx.r.int(from, to);
    if (s + len > ctx.hours || base[s]! < min || (base[s + 1] ?? 0) < min) continue;
    if (overlapsBusy(d, s, s + len)) continue;
    return s;
  }
  return undefined;
}

/**
 * Spikes, drops, gaps and leaks on a continuous series, as multipliers of its normal mean
 * (`mult`; 0 = silent). Also the one-hour total outage of a high-volume customer.
 */
function injectContinuous(ctx: Ctx, d: Draft, base: Float64Array, mult: Float64Array, count: number): void {
  const { r, o, hours, scanStart } = ctx;
  const min = o.minLabelExpected;
  for (let k = 0; k < count; k++) {
    const v = r.next();
    if (v < 0.35) {
      const len = r.int(1, 3);
      const f = r.uniform(3, 10);
      const s = findStart(ctx, d, base, scanStart, hours - 3, len, min);
      if (s === undefined) continue;
      for (let t = s; t < s + len; t++) mult[t]! *= f;
      addLabel(d, { kind: 'spike', startHour: s, endHour: s + len, effectStartHour: s, factor: f, expectedAtStart: base[s]!, note: `${f.toFixed(1)}× for ${len} h` });
    } else if (v < 0.6) {
      const len = r.int(2, 8);
      const f = r.uniform(0.1, 0.3);
      const s = findStart(ctx, d, base, scanStart, hours - len, len, min);
      if (s === undefined) continue;
      for (let t = s; t < s + len; t++) mult[t]! *= f;
      addLabel(d, { kind: 'drop', startHour: s, endHour: s + len, effectStartHour: s, factor: f, expectedAtStart: base[s]!, note: `to ${Math.round(f * 100)} % for ${len} h` });
    } else if (v < 0.85) {
      const len = r.int(2, 12);
      const s = findStart(ctx, d, base, scanStart, hours - len, len, min);
      if (s === undefined) continue;
      for (let t = s; t < s + len; t++) mult[t] = 0;
      addLabel(d, { kind: 'gap', startHour: s, endHour: s + len, effectStartHour: s, factor: 0, expectedAtStart: base[s]!, note: `total outage, ${len} h` });
    } else {
      // Leak: +rate/day for a week, then 5× until fixed; labelled from ~2× (the ramp's last hours, or the jump).
      const rate = r.uniform(0.08, 0.12);
      const worst = r.int(12, 48);
      const rampFrom = r.int(scanStart - 5 * DAY, hours - WEEK - 12);
      const jump = rampFrom + WEEK;
      const end = Math.min(hours, jump + worst);
      let labelFrom = jump;
      for (let t = rampFrom; t < jump; t++) {
        if (Math.pow(1 + rate, (t - rampFrom) / DAY) >= 1.9) {
          labelFrom = t;
          break;
        }
      }
      const peak = Math.max(...Array.from(base.subarray(rampFrom, end)));
      if (labelFrom < scanStart || peak < 2 * min || overlapsBusy(d, rampFrom, end)) continue;
      for (let t = rampFrom; t < end; t++) mult[t]! *= t < jump ? Math.pow(1 + rate, (t - rampFrom) / DAY) : 5;
      addLabel(d, { kind: 'leak', startHour: labelFrom, endHour: end, effectStartHour: rampFrom, factor: 5, expectedAtStart: base[labelFrom]!, note: `+${Math.round(rate * 100)} %/day for 7 days from hour ${rampFrom}, then 5× for ${end - jump} h` });
    }
  }
  // One-hour total outage of a high-volume customer: the hour must normally carry ≥ 1,000 events.
  if (r.chance(0.4) && Math.max(...Array.from(base.subarray(scanStart))) >= 2000) {
    const s = findStart(ctx, d, base, scanStart, hours - 2, 1, 1000);
    if (s !== undefined) {
      mult[s] = 0;
      addLabel(d, { kind: 'gap', startHour: s, endHour: s + 1, effectStartHour: s, factor: 0, expectedAtStart: base[s]!, note: 'one-hour total outage of a high-volume customer' });
    }
  }
}

const anomalyCount = (r: Random) => {
  const u = r.next();
  return u < 0.25 ? 0 : u < 0.6 ? 1 : u < 0.85 ? 2 : 3;
};

/** Day-to-day level: AR(1) on the log (busy and quiet stretches last a few days), index = day. */
function dayLevels(r: Random, days: number, sigma: number): number[] {
  const out: number[] = [];
  let x = 0;
  for (let k = 0; k < days; k++) {
    x = 0.6 * x + 0.8 * sigma * r.normal();
    out.push(Math.exp(x - (sigma * sigma) / 2));
  }
  return out;
}

function continuousValues(ctx: Ctx, clock: Clock, mean: Float64Array, daySigma: number, hourSigma: number): number[] {
  const { r, o, hours } = ctx;
  const firstDay = Math.floor(o.startMs / DAY_MS) - 1;
  const levels = dayLevels(r, Math.ceil(hours / DAY) + 3, daySigma);
  const values = new Array<number>(hours);
  for (let t = 0; t < hours; t++) {
    const local = o.startMs + t * HOUR_MS + (30 + clock.at00[t]!) * 60_000;
    const dayF = levels[Math.floor(local / DAY_MS) - firstDay] ?? 1;
    values[t] = mean[t]! > 0 ? r.poisson(mean[t]! * dayF * r.lognormal(hourSigma)) : 0;
  }
  return values;
}

function growthPerWeek(r: Random): number {
  const g = r.next();
  return g < 0.35 ? r.uniform(0, 0.03) : g < 0.45 ? -r.uniform(0, 0.02) : 0;
}

function makeContinuous(ctx: Ctx, d: Draft, kind: 'business' | 'always-on' | 'step' | 'steady'): RealisticCustomer {
  const { r, o, hours, scanStart } = ctx;
  const clock = clockOf(d.timeZone, o.startMs, hours);
  const office = kind === 'business' || (kind !== 'always-on' && r.chance(0.5));
  // Offices keep the public holidays and have quiet days; consumers' days off are only the holidays most people keep.
  if (kind !== 'steady') d.off = daysOff(ctx, d.zone, office ? 1 : 0.6, office);
  const oh = officeHours(r);
  const cd: ConsumerDay = { trough: r.uniform(0.25, 0.6), peakHour: r.uniform(19, 22), offDayFactor: r.uniform(0.75, 1.3) };
  const volume = r.logUniform(3, 50_000);
  const growth = growthPerWeek(r);
  const level = (l: LocalTime) => {
    const off = l.weekday === 0 || l.weekday === 6 || d.off.has(l.day);
    return office ? officeLevel(oh, l, off) : consumerLevel(cd, l, off);
  };
  const base = new Float64Array(hours);
  for (let t = 0; t < hours; t++) base[t] = volume * hourMean(clock, o.startMs, t, level) * Math.pow(1 + growth, t / WEEK);
  let detail = office ? `office ${oh.opensAt.toFixed(1)}-${oh.closesAt.toFixed(1)} h, days off at ${Math.round(oh.offDayPeak * 100)} %` : `consumer day, evening peak ${cd.peakHour.toFixed(1)} h, days off ×${cd.offDayFactor.toFixed(2)}`;
  const mult = new Float64Array(hours).fill(1);
  if (kind === 'step') {
    // A permanent step (a new contract, a migration, a lost product line): ×1.8-3 (mostly ×2) or ×0.35-0.6 (mostly ×½).
    const up = r.chance(0.6);
    const f = up ? (r.chance(0.6) ? 2 : r.uniform(1.8, 3)) : r.chance(0.6) ? 0.5 : r.uniform(0.35, 0.6);
    const at = r.int(scanStart + DAY, hours - 5 * DAY);
    for (let t = at; t < hours; t++) base[t]! *= f;
    addLabel(d, { kind: 'level_shift', startHour: at, endHour: at + DAY, effectStartHour: at, factor: f, expectedAtStart: base[at]!, note: `permanent step ×${f.toFixed(2)}` }, at, at + DAY);
    detail += `, step ×${f.toFixed(2)} at hour ${at}`;
    // The issue's case: a real 5× spike a few days after the step.
    if (r.chance(0.6)) {
      const len = r.int(1, 3);
      const s = findStart(ctx, { ...d, busy: [] }, base, at + 2 * DAY, Math.min(hours - 3, at + 6 * DAY), len, o.minLabelExpected);
      if (s !== undefined) {
        const sf = r.uniform(4, 6);
        for (let t = s; t < s + len; t++) mult[t]! *= sf;
        addLabel(d, { kind: 'spike', startHour: s, endHour: s + len, effectStartHour: s, factor: sf, expectedAtStart: base[s]!, note: `${sf.toFixed(1)}× for ${len} h, ${Math.round((s - at) / DAY)} days after the step` });
      }
    }
  }
  injectContinuous(ctx, d, base, mult, anomalyCount(r));
  const mean = base.map((b, t) => b * mult[t]!);
  const values = continuousValues(ctx, clock, mean, r.uniform(0.02, 0.1), r.uniform(0.03, 0.2));
  return { id: d.id, type: d.type, meter: 'api_calls', timeZone: d.timeZone, region: kind === 'steady' ? 'fixed offset' : d.zone.region, volume, daysOff: [...d.off].sort().map(isoDate), detail, values };
}

/** Low volume in clumps (a user's script, a page of retries): a compound Poisson of geometric clumps, over-dispersed. Never labelled. */
function makeBursty(ctx: Ctx, d: Draft): RealisticCustomer {
  const { r, o, hours } = ctx;
  const clock = clockOf(d.timeZone, o.startMs, hours);
  const oh = officeHours(r);
  d.off = daysOff(ctx, d.zone, 1, true);
  const clumpsAtPeak = r.logUniform(0.1, 3);
  const clumpMean = r.logUniform(2, 40);
  const level = (l: LocalTime) => officeLevel(oh, l, l.weekday === 0 || l.weekday === 6 || d.off.has(l.day));
  const values = new Array<number>(hours);
  for (let t = 0; t < hours; t++) {
    const n = r.poisson(clumpsAtPeak * hourMean(clock, o.startMs, t, level));
    let x = 0;
    for (let k = 0; k < n; k++) x += r.clumpSize(clumpMean);
    values[t] = x;
  }
  return {
    id: d.id,
    type: d.type,
    meter: 'api_calls',
    timeZone: d.timeZone,
    region: d.zone.region,
    volume: clumpsAtPeak * clumpMean,
    daysOff: [...d.off].sort().map(isoDate),
    detail: `${clumpsAtPeak.toFixed(2)} clumps/h at peak, ${clumpMean.toFixed(1)} events per clump`,
    values,
  };
}

/**
 * Cron jobs: one nightly run, or 2 or 4 a day at fixed hours, in the customer's zone (cron on a
 * laptop-configured server) or in UTC (cron on a UTC server); some weekdays only. Each run takes
 * 10-58 minutes (±15 %) and spills into the next hour when it overruns; a trickle of stray events
 * (health checks, manual calls) comes in office hours. Labels: missed runs (only the trickle) and
 * oversized runs (3-10× the events, longer).
 */
function makeBatch(ctx: Ctx, d: Draft): RealisticCustomer {
  const { r, o, hours, scanStart } = ctx;
  const clock = clockOf(d.timeZone, o.startMs, hours);
  d.off = daysOff(ctx, d.zone, 1, true);
  const cronZone = r.chance(0.5) ? d.timeZone : 'UTC';
  const u = r.next();
  const first = r.pick([0, 1, 2, 3, 4, 5, 6, 23]);
  const runHours = u < 0.7 ? [first] : u < 0.9 ? [first, (first + 12) % 24] : [0, 6, 12, 18].map((h) => (h + first) % 24);
  const cronMinute = r.pick([0, 0, 0, 0, 5, 15, 30]);
  const weekdaysOnly = r.chance(0.3);
  const duration = r.uniform(10, 58);
  const volume = r.logUniform(50, 200_000);
  const weekendRun = r.uniform(0.3, 1);
  const runSigma = r.uniform(0.05, 0.25);
  const oh = officeHours(r);
  const trickle = r.chance(0.2) ? 0 : r.uniform(0.02, 2);
  const trickleLevel = (l: LocalTime) => officeLevel(oh, l, l.weekday === 0 || l.weekday === 6 || d.off.has(l.day));

  const trickleMean = new Float64Array(hours);
  for (let t = 0; t < hours; t++) trickleMean[t] = trickle * hourMean(clock, o.startMs, t, trickleLevel);

  interface Run {
    startMin: number;
    minutes: number;
    events: number;
    meanEvents: number;
  }
  const runs: Run[] = [];
  const firstDay = Math.floor(o.startMs / DAY_MS) - 1;
  const lastDay = Math.floor((o.startMs + hours * HOUR_MS) / DAY_MS) + 1;
  for (let day = firstDay; day <= lastDay; day++) {
    const wd = (day + 4) % 7;
    if (weekdaysOnly && (wd === 0 || wd === 6)) continue;
    for (const h of runHours) {
      const utc = localToUtc(cronZone, day * DAY_MS + h * HOUR_MS + cronMinute * 60_000) + r.uniform(0, 4) * 60_000;
      const startMin = (utc - o.startMs) / 60_000;
      const meanEvents = volume * (wd === 0 || wd === 6 ? weekendRun : 1);
      runs.push({ startMin, minutes: duration * r.lognormal(0.15), events: meanEvents * r.lognormal(runSigma), meanEvents });
    }
  }
  const hoursOf = (run: Run) => {
    const a = Math.floor(run.startMin / 60);
    return [a, Math.ceil((run.startMin + run.minutes) / 60)] as const;
  };
  const inFirstHour = (run: Run) => (run.meanEvents * Math.min(run.minutes, 60 - (run.startMin % 60))) / run.minutes;

  // Labels: 0-2 of missed runs (60 %) and oversized runs (40 %), on runs whose first hour normally carries ≥ minLabelExpected.
  const eligible = runs.filter((run) => run.startMin >= scanStart * 60 && hoursOf(run)[1] < hours && inFirstHour(run) >= o.minLabelExpected);
  const n = r.pick([0, 1, 1, 2]);
  for (let k = 0; k < n && eligible.length > 0; k++) {
    const run = r.pick(eligible);
    let [a, b] = hoursOf(run);
    if (overlapsBusy(d, a, b)) continue;
    if (r.chance(0.6)) {
      run.events = 0;
      addLabel(d, { kind: 'missed_run', startHour: a, endHour: b, effectStartHour: a, factor: 0, expectedAtStart: inFirstHour(run), note: `missed run (normally ~${Math.round(run.meanEvents)} events over ${Math.round(run.minutes)} min)` });
    } else {
      const f = r.uniform(3, 10);
      const expected = inFirstHour(run);
      run.events *= f;
      run.minutes *= Math.sqrt(f);
      [a, b] = hoursOf(run);
      addLabel(d, { kind: 'spike', startHour: a, endHour: b, effectStartHour: a, factor: f, expectedAtStart: expected, note: `oversized run: ${f.toFixed(1)}× the events over ${Math.round(run.minutes)} min` });
    }
  }

  const runMean = new Float64Array(hours);
  for (const run of runs) {
    const end = run.startMin + run.minutes;
    for (let t = Math.max(0, Math.floor(run.startMin / 60)); t < Math.min(hours, Math.ceil(end / 60)); t++) {
      const overlap = Math.min(end, (t + 1) * 60) - Math.max(run.startMin, t * 60);
      if (overlap > 0) runMean[t]! += (run.events * overlap) / run.minutes;
    }
  }
  const values = new Array<number>(hours);
  for (let t = 0; t < hours; t++) values[t] = r.poisson(trickleMean[t]! * r.lognormal(0.3) + runMean[t]!);
  const at = runHours.map((h) => `${String(h).padStart(2, '0')}:${String(cronMinute).padStart(2, '0')}`).join(', ');
  return {
    id: d.id,
    type: d.type,
    meter: 'rows_processed',
    timeZone: d.timeZone,
    region: d.zone.region,
    volume,
    daysOff: [...d.off].sort().map(isoDate),
    detail: `cron ${at} ${cronZone}${weekdaysOnly ? ' weekdays' : ''}, ~${Math.round(duration)} min per run, trickle ${trickle.toFixed(2)}/h at peak`,
    scheduleTimeZone: cronZone,
    values,
  };
}

export function generateRealisticSet(seed: number, overrides: Partial<Omit<RealisticOptions, 'seed'>> = {}): RealisticSet {
  const o: RealisticOptions = { ...DEFAULT_REALISTIC_OPTIONS, ...overrides, seed };
  const r = new Random(rng(seed ^ 0x5eed));
  const hours = o.weeks * WEEK;
  const ctx: Ctx = { r, o, hours, scanStart: hours - o.scanWeeks * WEEK };
  const customers: RealisticCustomer[] = [];
  const labels: RealisticLabel[] = [];
  const zonesUsed = new Set<string>();
  for (let c = 0; c < o.customers; c++) {
    const type = pickType(r);
    const zone = r.weighted(ZONES);
    const timeZone = type === 'steady' ? r.pick(FIXED_ZONES) : zone.timeZone;
    zonesUsed.add(timeZone);
    const d: Draft = { id: `r${String(c).padStart(3, '0')}`, type, zone, timeZone, off: new Set(), labels: [], busy: [] };
    const customer = type === 'bursty' ? makeBursty(ctx, d) : type === 'batch' ? makeBatch(ctx, d) : makeContinuous(ctx, d, type);
    customers.push(customer);
    labels.push(...d.labels.sort((a, b) => a.startHour - b.startHour));
  }
  const clockChangesFound = [...zonesUsed].sort().flatMap((z) => clockChanges(z, o.startMs, hours));
  return { options: o, hours, scanStartHour: ctx.scanStart, customers, labels, clockChanges: clockChangesFound };
}

/** `--seed N --customer rNNN`: one customer's hours as CSV (UTC hour, local time, value, labels). */
function main(): void {
  const args = process.argv.slice(2);
  const arg = (name: string) => {
    const i = args.indexOf(name);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const set = generateRealisticSet(Number(arg('--seed') ?? 1), arg('--customers') ? { customers: Number(arg('--customers')) } : {});
  const id = arg('--customer') ?? 'r000';
  const c = set.customers.find((x) => x.id === id);
  if (!c) throw new Error(`no customer ${id}`);
  const mine = set.labels.filter((l) => l.customer === id);
  const fmt = new Intl.DateTimeFormat('sv-SE', { timeZone: c.timeZone, dateStyle: 'short', timeStyle: 'short', hourCycle: 'h23' });
  console.log(`# ${c.id} ${c.type} ${c.timeZone} ${c.detail}; days off ${c.daysOff.join(' ') || 'none'}`);
  console.log('hour,utc,local,value,label');
  c.values.forEach((v, t) => {
    const ms = set.options.startMs + t * HOUR_MS;
    const l = mine.find((x) => t >= x.effectStartHour && t < x.endHour);
    console.log(`${t},${new Date(ms).toISOString().slice(0, 16)},${fmt.format(ms)},${v},${l ? `${l.kind}${t < l.startHour ? ' (before label)' : ''}` : ''}`);
  });
}

if (process.argv[1]?.endsWith('anomaly-realistic.ts')) main();
