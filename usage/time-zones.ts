/** Time-zone arithmetic and the zones a request may name. Pure except for the one-time list of the store's zones. */

const MINUTE = 60_000;

/** Offset of `tz` from UTC at `ms`, in minutes. */
const formatters = new Map<string, Intl.DateTimeFormat>();

export function tzOffsetMinutes(tz: string, ms: number): number {
  if (tz === 'UTC' || tz === 'Etc/UTC') return 0;
  // Building a DateTimeFormat costs far more than using one: keep one per zone.
  let f = formatters.get(tz);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', { timeZone: tz, hourCycle: 'h23', year: 'numeric', month: 'numeric', day: 'numeric', hour: 'numeric', minute: 'numeric', second: 'numeric' });
    formatters.set(tz, f);
  }
  const parts = f.formatToParts(new Date(ms));
  const get = (t: string) => Number(parts.find((p) => p.type === t)?.value);
  const asUtc = Date.UTC(get('year'), get('month') - 1, get('day'), get('hour'), get('minute'), get('second'));
  return Math.round((asUtc - Math.floor(ms / 1000) * 1000) / MINUTE);
}

/**
 * Time zones a request may name: IANA names that both Node (Intl) and ClickHouse know, matched
 * case-insensitively and answered in their canonical spelling (`america/new_york` is
 * `America/New_York`). The API loads ClickHouse's `system.time_zones` once at start
 * (`useStoreTimeZones`); until then, Intl's list plus UTC and Etc/UTC stands in, and a name
 * missing from it but accepted by Intl (an alias such as Asia/Kolkata) takes Intl's spelling.
 */
let storeZones: Map<string, string> | undefined;
let intlZones: Map<string, string> | undefined;

function intlKnows(tz: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: tz });
    return true;
  } catch {
    return false;
  }
}

function zoneMap(names: Iterable<string>): Map<string, string> {
  const m = new Map<string, string>();
  for (const n of names) if (intlKnows(n)) m.set(n.toLowerCase(), n);
  return m;
}

/** The zones the store knows (`SELECT time_zone FROM system.time_zones`); only those Intl also knows are kept. */
export function useStoreTimeZones(names: Iterable<string>): void {
  storeZones = zoneMap(names);
}

/** The canonical spelling of a known time zone, or undefined if Node or ClickHouse does not know it. */
export function canonicalTimeZone(tz: string): string | undefined {
  if (storeZones) return storeZones.get(tz.toLowerCase());
  intlZones ??= zoneMap([...Intl.supportedValuesOf('timeZone'), 'UTC', 'Etc/UTC']);
  const known = intlZones.get(tz.toLowerCase());
  if (known) return known;
  return intlKnows(tz) ? new Intl.DateTimeFormat('en-US', { timeZone: tz }).resolvedOptions().timeZone : undefined;
}

export function isValidTimeZone(tz: string): boolean {
  return canonicalTimeZone(tz) !== undefined;
}

/** The reason a time zone is refused, for errors that name the field. */
export const unknownTimeZone = (tz: string) => `unknown time zone '${tz.slice(0, 100)}'; use an IANA name such as Europe/Berlin`;
