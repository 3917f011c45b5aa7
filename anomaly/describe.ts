/**
 * Wording of detections: numbers with thousands separators, clock times in the customer's zone.
 * Pure (Intl only; formatters are cached per zone).
 */

const exactFormat = new Intl.NumberFormat('en-US', { maximumFractionDigits: 2 });
const approxFormat = new Intl.NumberFormat('en-US', { maximumSignificantDigits: 2 });
const moneyFormat = new Intl.NumberFormat('en-US', { minimumFractionDigits: 2, maximumFractionDigits: 2 });

/** An observed value as it is: 14,213 (up to two decimals for fractional meters). */
export function formatExact(x: number): string {
  return exactFormat.format(x);
}

/** A baseline or spread, rounded to two significant digits: 2,137 → "2,100", 287 → "290", 0.44 → "0.44". */
export function formatApprox(x: number): string {
  return approxFormat.format(x);
}

/** A money amount with two decimals: 4,820.00. */
export function formatMoney(x: number): string {
  return moneyFormat.format(x);
}

const clockFormats = new Map<string, Intl.DateTimeFormat>();
function clockFormat(timeZone: string): Intl.DateTimeFormat {
  let f = clockFormats.get(timeZone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-GB', { timeZone, hourCycle: 'h23', weekday: 'short', day: 'numeric', month: 'short', year: 'numeric', hour: '2-digit', minute: '2-digit' });
    clockFormats.set(timeZone, f);
  }
  return f;
}

interface LocalParts {
  weekday: string;
  day: string;
  month: string;
  year: string;
  time: string;
}

function localParts(ms: number, timeZone: string): LocalParts {
  const parts: Record<string, string> = {};
  for (const p of clockFormat(timeZone).formatToParts(ms)) parts[p.type] = p.value;
  return { weekday: parts.weekday ?? '', day: parts.day ?? '', month: parts.month ?? '', year: parts.year ?? '', time: `${parts.hour ?? '00'}:${parts.minute ?? '00'}` };
}

/** "14:00": the local clock time at `ms` in `timeZone` (24-hour clock). */
export function clockTime(ms: number, timeZone: string): string {
  return localParts(ms, timeZone).time;
}

/**
 * When something began, as seen from `untilMs`: "09:00" on the same local day, "Mon 21:00"
 * within the last six days, "Mon 3 Mar 21:00" before that.
 */
export function sinceTime(sinceMs: number, untilMs: number, timeZone: string): string {
  const a = localParts(sinceMs, timeZone);
  const b = localParts(untilMs, timeZone);
  const sameDay = a.day === b.day && a.month === b.month && a.year === b.year;
  if (sameDay && untilMs - sinceMs < 86_400_000) return a.time;
  if (untilMs - sinceMs < 6 * 86_400_000) return `${a.weekday} ${a.time}`;
  return `${a.weekday} ${a.day} ${a.month} ${a.time}`;
}

/** "1 hour", "5 hours". */
export function hoursText(hours: number): string {
  return hours === 1 ? '1 hour' : `${formatExact(hours)} hours`;
}
