import { Decimal } from '../common/decimal.ts';
import { isLosslessNumber } from 'lossless-json';
import { compilePath, readPath, type PathSegment } from '../common/jsonpath.ts';
import type { UsageEvent } from '../ingest/index.ts';
import type { Meter } from './contracts.ts';

/**
 * Meters: what each meter takes from an event. Pure. The processor runs `meterValues` on every
 * event; the backfill of a new meter runs the same function over stored raw events, so a
 * meter's values never depend on when it was created.
 */
// The definition itself is in ./contracts.ts (pure, so the browser code can read its types).
export { Aggregations, MeterInputSchema, type Aggregation, type Meter, type MeterInput } from './contracts.ts';

/** Values are stored as Decimal(38, 9): 29 integer digits and 9 fractional digits. */
export const VALUE_SCALE = 9;
const VALUE_LIMIT = new Decimal('1e29');

export interface MeterValue {
  meter_id: string;
  value: string;
  value_key: string;
  group_by: Record<string, string>;
}

export type MeterValuesResult = { ok: true; values: MeterValue[] } | { ok: false; reason: string };

interface CompiledMeter {
  meter: Meter;
  value?: PathSegment[];
  groupBy: [string, PathSegment[]][];
  filter: [PathSegment[], { eq?: unknown; neq?: unknown; in?: unknown[]; exists?: boolean }][];
}

const compiledCache = new WeakMap<Meter, CompiledMeter>();

function compile(meter: Meter): CompiledMeter {
  let c = compiledCache.get(meter);
  if (c) return c;
  const seg = (p: string) => {
    const r = compilePath(p);
    if (!r.ok) throw new Error(`meter ${meter.slug}: ${r.reason}`);
    return r.segments;
  };
  c = {
    meter,
    value: meter.valueProperty ? seg(meter.valueProperty) : undefined,
    groupBy: Object.entries(meter.groupBy ?? {}).map(([k, p]) => [k, seg(p)]),
    filter: Object.entries(meter.filter ?? {}).map(([p, f]) => [seg(p), f]),
  };
  compiledCache.set(meter, c);
  return c;
}

/** Text of a JSON scalar as stored for group-by values and unique keys. */
export function scalarText(v: unknown): string {
  if (v === undefined || v === null) return '';
  if (typeof v === 'string') return v;
  if (isLosslessNumber(v)) return (v as { value: string }).value;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  return JSON.stringify(v);
}

/** An exact decimal string from a JSON number or numeric string, or a reason it is not one. */
export function exactDecimal(v: unknown): { ok: true; value: string } | { ok: false; reason: string } {
  let text: string;
  if (isLosslessNumber(v)) text = (v as { value: string }).value;
  else if (typeof v === 'string') text = v.trim();
  else if (typeof v === 'number') text = String(v);
  else return { ok: false, reason: v === undefined ? 'is missing' : `must be a number, got ${v === null ? 'null' : typeof v}` };
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(text)) return { ok: false, reason: `must be a number, got "${text.slice(0, 40)}"` };
  const d = new Decimal(text);
  if (d.decimalPlaces() > VALUE_SCALE) return { ok: false, reason: `has more than ${VALUE_SCALE} decimal places (${text.slice(0, 40)})` };
  if (d.abs().gte(VALUE_LIMIT)) return { ok: false, reason: `is too large (at most 29 integer digits)` };
  return { ok: true, value: d.toFixed() };
}

function matchesFilter(c: CompiledMeter, data: unknown): boolean {
  for (const [path, f] of c.filter) {
    const v = readPath(data, path);
    if (f.exists !== undefined) {
      if ((v !== undefined && v !== null) !== f.exists) return false;
      continue;
    }
    const text = scalarText(v);
    if (f.eq !== undefined && text !== String(f.eq)) return false;
    if (f.neq !== undefined && text === String(f.neq)) return false;
    if (f.in !== undefined && !f.in.map(String).includes(text)) return false;
  }
  return true;
}

/**
 * The values every matching meter takes from the event. An event that matches a meter but
 * lacks a usable value is an error for the whole event (it goes to the dead-letter stream
 * with this reason), so a total never silently misses part of an event.
 */
export function meterValues(event: Pick<UsageEvent, 'type' | 'data'>, meters: readonly Meter[]): MeterValuesResult {
  const values: MeterValue[] = [];
  for (const meter of meters) {
    if (meter.eventType !== event.type) continue;
    const c = compile(meter);
    if (!matchesFilter(c, event.data)) continue;
    const group_by: Record<string, string> = {};
    for (const [k, p] of c.groupBy) group_by[k] = scalarText(readPath(event.data, p));
    if (meter.aggregation === 'COUNT') {
      values.push({ meter_id: meter.id, value: '1', value_key: '', group_by });
    } else if (meter.aggregation === 'UNIQUE_COUNT') {
      const raw = readPath(event.data, c.value!);
      if (raw === undefined || raw === null) return { ok: false, reason: `meter "${meter.slug}": data${meter.valueProperty!.slice(1)} is missing` };
      values.push({ meter_id: meter.id, value: '0', value_key: scalarText(raw), group_by });
    } else {
      const d = exactDecimal(readPath(event.data, c.value!));
      if (!d.ok) return { ok: false, reason: `meter "${meter.slug}": data${meter.valueProperty!.slice(1)} ${d.reason}` };
      values.push({ meter_id: meter.id, value: d.value, value_key: '', group_by });
    }
  }
  return { ok: true, values };
}
