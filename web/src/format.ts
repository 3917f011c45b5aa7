/**
 * Formatting for the dashboard and the portal. Pure; no floats on the way to the screen:
 * quantities and amounts are the API's decimal strings, shown as they are (a currency symbol
 * or code is put around them, never a re-rounded number). Charts are the one place numbers are
 * parsed (`toChartNumber`), to draw, never to show.
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
      const parts = new Intl.NumberFormat(locale, { style: 'currency', currency, currencyDisplay: 'narrowSymbol' }).formatToParts(1);
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

/** An amount exactly as the API gave it, with the currency's symbol: "119.59" USD -> "$119.59", "-5.00" -> "-$5.00". */
export function money(amount: string, currency: string, locale = 'en-US'): string {
  const { symbol, before } = currencySymbol(currency, locale);
  const neg = amount.startsWith('-');
  const abs = neg ? amount.slice(1) : amount;
  const body = before ? `${symbol}${abs}` : `${abs}\u00a0${symbol}`;
  return neg ? `-${body}` : body;
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
