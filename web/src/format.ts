/**
 * Formatting for the dashboard and the portal. Pure. Quantities and amounts are the API's exact
 * decimal strings and never go through a float on the way to the screen: rounding for display
 * is done on the digits of the string (half-up, away from zero, as invoices round), and Intl
 * only places the symbol, the group and decimal separators around those digits (it formats the
 * integer part as a BigInt). Charts are the one place numbers are parsed (`toChartNumber`), to
 * draw, never to show.
 */

const DECIMAL = /^-?\d+(\.\d+)?$/;

export function isDecimal(s: string): boolean {
  return DECIMAL.test(s);
}

/** Compares two decimal strings exactly (for sorting): -1, 0 or 1. */
export function compareDecimal(a: string, b: string): number {
  if (!isDecimal(a) || !isDecimal(b)) return a < b ? -1 : a > b ? 1 : 0;
  const neg = (s: string) => s.startsWith('-') && !/^-0+(\.0+)?$/.test(s);
  const na = neg(a);
  const nb = neg(b);
  if (na !== nb) return na ? -1 : 1;
  const abs = (s: string) => {
    const [i = '0', f = ''] = s.replace(/^-/, '').split('.');
    return { i: i.replace(/^0+(?=\d)/, ''), f: f.replace(/0+$/, '') };
  };
  const x = abs(a);
  const y = abs(b);
  let c = 0;
  if (x.i.length !== y.i.length) c = x.i.length < y.i.length ? -1 : 1;
  else if (x.i !== y.i) c = x.i < y.i ? -1 : 1;
  else {
    const n = Math.max(x.f.length, y.f.length);
    const fx = x.f.padEnd(n, '0');
    const fy = y.f.padEnd(n, '0');
    c = fx === fy ? 0 : fx < fy ? -1 : 1;
  }
  return na ? -c : c;
}

const symbols = new Map<string, { symbol: string; before: boolean }>();

/** The currency's symbol in `locale` and whether it goes before the number (from Intl, with the number discarded). */
export function currencySymbol(currency: string, locale = 'en-US'): { symbol: string; before: boolean } {
  const k = `${locale}\u0000${currency}`;
  let s = symbols.get(k);
  if (!s) {
    try {
      const parts = new Intl.NumberFormat(locale, { style: 'currency', currency }).formatToParts(1);
      const i = parts.findIndex((p) => p.type === 'currency');
      const n = parts.findIndex((p) => p.type === 'integer');
      s = { symbol: parts[i]?.value ?? currency, before: i < n };
    } catch {
      s = { symbol: currency, before: false };
    }
    symbols.set(k, s);
  }
  return s;
}

/** Digits after the decimal point of the currency's minor unit: USD 2, JPY 0, KWD 3 (ISO 4217, from Intl). */
export function minorDigits(currency: string): number {
  try {
    return new Intl.NumberFormat('en-US', { style: 'currency', currency }).resolvedOptions().maximumFractionDigits ?? 2;
  } catch {
    return 2;
  }
}

/**
 * A decimal string rounded to `digits` places, half-up (ties away from zero), on the string
 * itself: "2.345" -> "2.35", "-0.005" -> "-0.01", "-0.004" -> "0.00" (no negative zero).
 * Exactly `digits` fraction digits. Not a decimal: returned as is.
 */
export function roundDecimal(s: string, digits: number): string {
  if (!isDecimal(s)) return s;
  const neg = s.startsWith('-');
  const [int = '0', frac = ''] = (neg ? s.slice(1) : s).split('.');
  const kept = (int + frac.padEnd(digits, '0').slice(0, digits)).replace(/^0+(?=\d)/, '');
  const up = (frac[digits] ?? '0') >= '5';
  let n = BigInt(kept);
  if (up) n += 1n;
  const all = n.toString().padStart(digits + 1, '0');
  const out = digits === 0 ? all : `${all.slice(0, -digits)}.${all.slice(-digits)}`;
  return neg && n !== 0n ? `-${out}` : out;
}

/** Trailing fraction zeros beyond `keep` digits removed: ("1.5000", 0) -> "1.5", ("2.000", 0) -> "2", ("3.10", 2) -> "3.10". */
function trimZeros(s: string, keep = 0): string {
  const dot = s.indexOf('.');
  if (dot < 0) return s;
  let end = s.length;
  while (end > dot + 1 + keep && s[end - 1] === '0') end--;
  return s.slice(0, end === dot + 1 ? dot : end);
}

const formats = new Map<string, Intl.NumberFormat>();
function numberFormat(locale: string, currency: string | undefined, digits: number): Intl.NumberFormat {
  const k = `${locale}\u0000${currency ?? ''}\u0000${digits}`;
  let f = formats.get(k);
  if (!f) {
    f = new Intl.NumberFormat(locale, currency ? { style: 'currency', currency, minimumFractionDigits: digits, maximumFractionDigits: digits } : { minimumFractionDigits: digits, maximumFractionDigits: digits });
    formats.set(k, f);
  }
  return f;
}

/**
 * An exact decimal string laid out by Intl without losing a digit: Intl formats the sign and
 * the integer part (as a BigInt: grouping, symbol, its place), and the fraction digits of the
 * string replace Intl's. `s` must already have the digits to show.
 */
function layout(s: string, locale: string, currency?: string): string {
  if (!isDecimal(s)) return s;
  const neg = s.startsWith('-');
  const [int = '0', frac = ''] = (neg ? s.slice(1) : s).split('.');
  const f = numberFormat(locale, currency, frac.length);
  // The integer part alone, grouped (no sign, no symbol), then put into a template that has both.
  const grouped = numberFormat(locale, undefined, 0).format(BigInt(int));
  const template = f.formatToParts(neg ? -1n : 1n);
  let intDone = false;
  return template
    .map((p) => {
      if (p.type === 'integer' || p.type === 'group') {
        if (intDone) return '';
        intDone = true;
        return grouped;
      }
      return p.type === 'fraction' ? frac : p.value;
    })
    .join('');
}

/**
 * An amount in the currency's minor unit, grouped, with its symbol: ("213.5", "USD") ->
 * "$213.50", ("29", "USD") -> "$29.00", ("1234567.891", "USD") -> "$1,234,567.89",
 * ("1200", "JPY") -> "¥1,200", ("-5", "USD") -> "-$5.00". Rounded half-up on the string.
 */
export function money(amount: string, currency: string, locale = 'en-US'): string {
  return layout(roundDecimal(amount, minorDigits(currency)), locale, currency);
}

/**
 * A price per unit, exact: at least the currency's minor digits, every digit it has beyond
 * them kept ("0.00002" -> "$0.00002", "0.05" -> "$0.05", "49" -> "$49.00").
 */
export function unitPrice(amount: string, currency: string, locale = 'en-US'): string {
  if (!isDecimal(amount)) return amount;
  const min = minorDigits(currency);
  const digits = Math.max(min, (amount.split('.')[1] ?? '').length);
  return layout(trimZeros(roundDecimal(amount, digits), min), locale, currency);
}

/**
 * A quantity for reading: grouped, rounded half-up to at most `maxDecimals` places, trailing
 * zeros dropped; integers stay exact at any size ("1234567" -> "1,234,567", "817.460264728"
 * with 2 -> "817.46", "0.5" -> "0.5"). The exact value belongs in a data-value/title beside it.
 */
export function quantity(value: string, maxDecimals = 4, locale = 'en-US'): string {
  return layout(trimZeros(roundDecimal(value, maxDecimals)), locale);
}

/** A share (0..1, decimal string) as a percentage: ("0.46666", 1) -> "46.7%". */
export function percent(share: string, decimals = 1, locale = 'en-US'): string {
  if (!isDecimal(share)) return share;
  const neg = share.startsWith('-');
  const [int = '0', frac = ''] = (neg ? share.slice(1) : share).split('.');
  const f = frac.padEnd(2, '0');
  const shifted = `${neg ? '-' : ''}${int}${f.slice(0, 2)}${f.length > 2 ? `.${f.slice(2)}` : ''}`.replace(/^(-?)0+(?=\d)/, '$1');
  return `${layout(roundDecimal(shifted, decimals), locale)}%`;
}

/** A chart axis value (a float: drawing only), grouped, at most 2 decimals: 125000 -> "125,000". */
export function axisNumber(n: number, locale = 'en-US'): string {
  return new Intl.NumberFormat(locale, { maximumFractionDigits: 2 }).format(n);
}

/** "2026-11-14": the local date of an instant in the zone. */
export function localDate(iso: string, timeZone: string): string {
  return new Intl.DateTimeFormat('en-CA', { timeZone, year: 'numeric', month: '2-digit', day: '2-digit' }).format(new Date(iso));
}

/** For charts only: a decimal string as a number (precision loss is fine for drawing). */
export function toChartNumber(s: string): number {
  return Number(s);
}

/** "Nov 3, 2026, 14:00" in the zone. */
export function dateTime(iso: string, timeZone: string, locale = 'en-US'): string {
  return new Intl.DateTimeFormat(locale, { timeZone, year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', hourCycle: 'h23' }).format(new Date(iso));
}

/** "Nov 3, 2026" in the zone. */
export function date(iso: string, timeZone: string, locale = 'en-US'): string {
  return new Intl.DateTimeFormat(locale, { timeZone, year: 'numeric', month: 'short', day: 'numeric' }).format(new Date(iso));
}

/** A half-open period [start, end) as the customer reads it: "Nov 1 – Nov 30, 2026" (the last day included). */
export function period(startIso: string, endIso: string, timeZone: string, locale = 'en-US'): string {
  const lastMs = Date.parse(endIso) - 1;
  const f = new Intl.DateTimeFormat(locale, { timeZone, month: 'short', day: 'numeric' });
  const y = new Intl.DateTimeFormat(locale, { timeZone, year: 'numeric' });
  return `${f.format(new Date(startIso))} – ${f.format(new Date(lastMs))}, ${y.format(new Date(lastMs))}`;
}

/** The zone's short name at an instant, e.g. "EST" or "GMT+1". */
export function zoneName(timeZone: string, iso = new Date().toISOString(), locale = 'en-US'): string {
  const p = new Intl.DateTimeFormat(locale, { timeZone, timeZoneName: 'short' }).formatToParts(new Date(iso));
  return p.find((x) => x.type === 'timeZoneName')?.value ?? timeZone;
}

/** First day of `month` (YYYY-MM) and of the next one, as UTC ISO strings. */
export function monthRange(month: string): { from: string; to: string } {
  const [y, m] = month.split('-').map(Number) as [number, number];
  return { from: new Date(Date.UTC(y, m - 1, 1)).toISOString(), to: new Date(Date.UTC(y, m, 1)).toISOString() };
}

/** The month before the one containing `nowMs` (UTC), as YYYY-MM. */
export function previousMonth(nowMs: number): string {
  const d = new Date(nowMs);
  return new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth() - 1, 1)).toISOString().slice(0, 7);
}
