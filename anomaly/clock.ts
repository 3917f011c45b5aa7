/**
 * A zone's UTC offset per hour of a series, so the baseline compares the same LOCAL hour of the
 * week (customers follow their clocks, and their clocks move at DST). Pure in effect: the offsets
 * come from Intl (the ICU zone data Node ships) and are memoised per zone and year, which changes
 * no result.
 */

const HOUR_MS = 3_600_000;
const STEP_MS = 6 * HOUR_MS;

const formatters = new Map<string, Intl.DateTimeFormat>();
/** Per zone and UTC year: the offset (minutes) at the year's start and the changes within it. */
const years = new Map<string, { startOffset: number; changes: Array<{ atMs: number; offset: number }> }>();

/** The zone's offset from UTC at `utcMs`, in minutes; 0 for an unknown zone. */
export function offsetMinutesAt(timeZone: string, utcMs: number): number {
  if (timeZone === 'UTC' || timeZone === 'Etc/UTC') return 0;
  let f = formatters.get(timeZone);
  if (!f) {
    try {
      f = new Intl.DateTimeFormat('en-US', { timeZone, hourCycle: 'h23', year: 'numeric', month: 'numeric', day: 'numeric', hour: 'numeric', minute: 'numeric' });
    } catch {
      return 0;
    }
    formatters.set(timeZone, f);
  }
  const p: Record<string, number> = {};
  for (const x of f.formatToParts(utcMs)) if (x.type !== 'literal') p[x.type] = Number(x.value);
  const local = Date.UTC(p.year!, p.month! - 1, p.day!, p.hour!, p.minute!);
  return Math.round((local - Math.floor(utcMs / 60_000) * 60_000) / 60_000);
}

function yearOf(timeZone: string, year: number) {
  const key = `${timeZone}|${year}`;
  let y = years.get(key);
  if (y) return y;
  const from = Date.UTC(year, 0, 1);
  const to = Date.UTC(year + 1, 0, 1);
  const startOffset = offsetMinutesAt(timeZone, from);
  const changes: Array<{ atMs: number; offset: number }> = [];
  let prev = startOffset;
  for (let t = from + STEP_MS; t <= to; t += STEP_MS) {
    const o = offsetMinutesAt(timeZone, t);
    if (o === prev) continue;
    // Bisect to the minute where the offset changes.
    let lo = t - STEP_MS;
    let hi = t;
    while (hi - lo > 60_000) {
      const mid = lo + Math.floor((hi - lo) / 120_000) * 60_000;
      if (offsetMinutesAt(timeZone, mid) === prev) lo = mid;
      else hi = mid;
    }
    changes.push({ atMs: hi, offset: o });
    prev = o;
  }
  years.set(key, (y = { startOffset, changes }));
  return y;
}

function offsetFromTable(timeZone: string, utcMs: number): number {
  const y = yearOf(timeZone, new Date(utcMs).getUTCFullYear());
  let o = y.startOffset;
  for (const c of y.changes) if (c.atMs <= utcMs) o = c.offset;
  return o;
}

/**
 * Offsets (whole hours, rounded; a half-hour zone's clock changes move it by whole hours) of the
 * `n` hours from `startMs`, and whether they change within the series.
 */
export function hourlyOffsets(timeZone: string, startMs: number, n: number): { hours: Int8Array; changes: boolean } {
  const hours = new Int8Array(n);
  if (n === 0 || timeZone === 'UTC' || timeZone === 'Etc/UTC') return { hours, changes: false };
  const first = offsetFromTable(timeZone, startMs);
  const last = offsetFromTable(timeZone, startMs + (n - 1) * HOUR_MS);
  const sameYear = new Date(startMs).getUTCFullYear() === new Date(startMs + (n - 1) * HOUR_MS).getUTCFullYear();
  const constant = first === last && sameYear && yearOf(timeZone, new Date(startMs).getUTCFullYear()).changes.every((c) => c.atMs <= startMs || c.atMs > startMs + (n - 1) * HOUR_MS);
  if (constant) {
    hours.fill(Math.round(first / 60));
    return { hours, changes: false };
  }
  for (let i = 0; i < n; i++) hours[i] = Math.round(offsetFromTable(timeZone, startMs + i * HOUR_MS) / 60);
  return { hours, changes: hours.some((h) => h !== hours[0]) };
}
