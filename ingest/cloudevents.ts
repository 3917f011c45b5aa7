import { isLosslessNumber } from 'lossless-json';
import { z } from 'zod';
import { formatDurationMs } from '../common/duration.ts';
import { decodeUtf8Escaped, scanJson, type Utf8Error } from '../common/json-text.ts';

/**
 * CloudEvents 1.0 JSON as Meterline accepts it (the format OpenMeter's API and SDKs use).
 * Pure: the same checks run at the HTTP edge and again in the processor for events that were
 * published straight onto NATS. `now` is a parameter.
 */
export const MAX_FIELD_LENGTH = 256;
/**
 * How deep `data` (and any extension attribute) may nest: the `data` object is level 1, each
 * object or array in it one more. Deeper input would overflow recursive code (JSON.stringify,
 * lossless-json) further down the line.
 */
export const MAX_DATA_DEPTH = 64;

export const LONE_SURROGATE_REASON = 'contains a lone UTF-16 surrogate (invalid Unicode)';
const NOT_FINITE_REASON = 'the number is out of range: not finite as a double (magnitude beyond 1.8e308)';
/** At most this many content errors are listed per event. */
const MAX_CONTENT_ERRORS = 10;

const CONTENT_TYPE = /^application\/(.+\+)?json\b/i;
const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$/;

const attr = (name: string) =>
  z
    .string({ required_error: `${name} is required`, invalid_type_error: `${name} must be a string` })
    .min(1, `${name} must not be empty`)
    .max(MAX_FIELD_LENGTH, `${name} must be at most ${MAX_FIELD_LENGTH} characters`);

export const CloudEventSchema = z
  .object({
    specversion: z.literal('1.0', { errorMap: () => ({ message: 'specversion must be "1.0"' }) }),
    id: attr('id'),
    source: attr('source'),
    type: attr('type'),
    subject: attr('subject'),
    time: z
      .string({ invalid_type_error: 'time must be an RFC 3339 string' })
      .regex(RFC3339, 'time must be an RFC 3339 timestamp such as 2026-01-31T12:00:00Z')
      .nullish(),
    datacontenttype: z
      .string()
      .regex(CONTENT_TYPE, 'datacontenttype must be application/json')
      .nullish(),
    data: z
      .record(z.unknown(), { invalid_type_error: 'data must be a JSON object' })
      .nullish(),
  })
  .passthrough();

export interface UsageEvent {
  id: string;
  source: string;
  type: string;
  subject: string;
  /** Event time in epoch milliseconds (UTC); the receipt time when the event had none. */
  timeMs: number;
  /** The `data` object; numbers may be lossless number objects when parsed by the processor. */
  data: Record<string, unknown>;
}

export interface FieldError {
  field: string;
  reason: string;
}

export interface TimeLimits {
  maxFutureMs: number;
  maxPastMs: number;
}

/** True if the date and hour of an RFC 3339 text exist (Date.parse rolls 2026-02-30 over to March 2). */
function calendarValid(time: string): boolean {
  const [y, mo, d, h] = [time.slice(0, 4), time.slice(5, 7), time.slice(8, 10), time.slice(11, 13)].map(Number) as [number, number, number, number];
  const leap = (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0;
  const days = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][mo - 1];
  return days !== undefined && d >= 1 && d <= days && h <= 23;
}

/** A limit as text: whole seconds or days as before, anything else exactly (e.g. 12h, 1500ms). */
const limitText = (ms: number, unitMs: number, unit: string) => (ms % unitMs === 0 ? `${ms / unitMs}${unit}` : formatDurationMs(ms));

type Envelope = Pick<z.infer<typeof CloudEventSchema>, 'id' | 'source' | 'type' | 'subject' | 'time' | 'data'>;

const isAttr = (v: unknown): v is string => typeof v === 'string' && v.length >= 1 && v.length <= MAX_FIELD_LENGTH;

/** Well-formed UTF-16: no lone surrogate, so the text has a UTF-8 form ClickHouse can store (ES2024, Node 20). */
const isWellFormed = (s: string): boolean => (s as unknown as { isWellFormed(): boolean }).isWellFormed();
const toWellFormed = (s: string): string => (s as unknown as { toWellFormed(): string }).toWellFormed();

/** The attributes of the envelope; any other is an extension attribute (kept in the body, not stored). */
const ENVELOPE = new Set(['specversion', 'id', 'source', 'type', 'subject', 'time', 'datacontenttype', 'data']);

/**
 * What the store cannot hold in `value` (the attribute `name`): strings and keys with a lone
 * surrogate, numbers that are not finite as doubles (1e400 would become Infinity), nesting deeper
 * than `MAX_DATA_DEPTH`. With `depthOnly`, only the nesting. The walk never goes deeper than the
 * limit, so hostile input cannot overflow the stack here.
 */
function contentErrors(name: string, value: unknown, depthOnly: boolean, errors: FieldError[]): void {
  const path: string[] = [name];
  const field = () => path.join('.');
  let stop = false;
  const add = (reason: string) => {
    errors.push({ field: field(), reason });
    stop = errors.length >= MAX_CONTENT_ERRORS;
  };
  const walk = (v: unknown, depth: number): void => {
    if (typeof v === 'string') {
      if (!depthOnly && !isWellFormed(v)) add(LONE_SURROGATE_REASON);
    } else if (typeof v === 'number') {
      if (!depthOnly && !Number.isFinite(v)) add(NOT_FINITE_REASON);
    } else if (typeof v === 'object' && v !== null) {
      // A LosslessNumber (from the processor's parse), not a plain object that merely looks like one.
      if (Object.getPrototypeOf(v) !== Object.prototype && !Array.isArray(v)) {
        if (!depthOnly && isLosslessNumber(v) && !Number.isFinite(Number(v.value))) add(NOT_FINITE_REASON);
        return;
      }
      if (depth > MAX_DATA_DEPTH) {
        errors.push({ field: name, reason: `${name} is nested more than ${MAX_DATA_DEPTH} levels deep` });
        stop = true;
        return;
      }
      if (Array.isArray(v)) {
        for (let i = 0; i < v.length && !stop; i++) {
          path.push(String(i));
          walk(v[i], depth + 1);
          path.pop();
        }
        return;
      }
      for (const k in v) {
        if (stop) return;
        path.push(k);
        if (!depthOnly && !isWellFormed(k)) add(LONE_SURROGATE_REASON);
        walk((v as Record<string, unknown>)[k], depth + 1);
        path.pop();
      }
    }
  };
  walk(value, 1);
}

/** True when `contentErrors` would find nothing: the hot path, without paths or closures. */
function storable(v: unknown, depth: number, depthOnly: boolean): boolean {
  if (typeof v === 'string') return depthOnly || isWellFormed(v);
  if (typeof v === 'number') return depthOnly || Number.isFinite(v);
  if (typeof v !== 'object' || v === null) return true;
  const array = Array.isArray(v);
  if (!array && Object.getPrototypeOf(v) !== Object.prototype) return depthOnly || !isLosslessNumber(v) || Number.isFinite(Number(v.value));
  if (depth > MAX_DATA_DEPTH) return false;
  if (array) {
    for (let i = 0; i < v.length; i++) if (!storable(v[i], depth + 1, depthOnly)) return false;
    return true;
  }
  for (const k in v) {
    if ((!depthOnly && !isWellFormed(k)) || !storable((v as Record<string, unknown>)[k], depth + 1, depthOnly)) return false;
  }
  return true;
}

/** What the store cannot hold in a well-formed envelope (see `contentErrors`); undefined when it can hold all of it. */
function storableErrors(raw: Record<string, unknown>, ev: Envelope): FieldError[] | undefined {
  let ok = isWellFormed(ev.id) && isWellFormed(ev.source) && isWellFormed(ev.type) && isWellFormed(ev.subject) && (ev.data == null || storable(ev.data, 1, false));
  for (const name in raw) {
    if (!ok) break;
    if (!ENVELOPE.has(name)) ok = storable(raw[name], 1, true);
  }
  if (ok) return undefined;
  const errors: FieldError[] = [];
  for (const name of ['id', 'source', 'type', 'subject'] as const) {
    if (!isWellFormed(ev[name])) errors.push({ field: name, reason: LONE_SURROGATE_REASON });
  }
  if (ev.data != null) contentErrors('data', ev.data, false, errors);
  // Extension attributes are not stored, but must not nest deeper than data may (they are parsed again).
  for (const name in raw) {
    if (!ENVELOPE.has(name) && typeof raw[name] === 'object') contentErrors(name, raw[name], true, errors);
  }
  return errors;
}

/**
 * The same checks as `CloudEventSchema`, for the common case of a well-formed event, without
 * zod's cost (it is the hot path of ingest and the processor); `undefined` when any check
 * fails, and the schema then says why.
 */
function wellFormed(raw: Record<string, unknown>): Envelope | undefined {
  const { specversion, id, source, type, subject, time, datacontenttype, data } = raw;
  if (specversion !== '1.0' || !isAttr(id) || !isAttr(source) || !isAttr(type) || !isAttr(subject)) return undefined;
  if (time != null && (typeof time !== 'string' || !RFC3339.test(time))) return undefined;
  if (datacontenttype != null && (typeof datacontenttype !== 'string' || !CONTENT_TYPE.test(datacontenttype))) return undefined;
  // A plain object (JSON.parse's and lossless-json's objects), not an array or a LosslessNumber.
  if (data != null && (typeof data !== 'object' || Object.getPrototypeOf(data) !== Object.prototype)) return undefined;
  return { id, source, type, subject, time: time as string | null | undefined, data: data as Record<string, unknown> | null | undefined };
}

export type EventCheck = { ok: true; event: UsageEvent } | { ok: false; errors: FieldError[] };

export function checkEvent(raw: unknown, receivedAtMs: number, limits: TimeLimits): EventCheck {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    return { ok: false, errors: [{ field: '', reason: 'an event must be a JSON object' }] };
  }
  let ev = wellFormed(raw as Record<string, unknown>);
  if (!ev) {
    // Something is off: zod names every problem.
    const parsed = CloudEventSchema.safeParse(raw);
    // The processor may parse losslessly: `"data": 5` arrives as a LosslessNumber object, which z.record accepts.
    const dataIsNumber = isLosslessNumber((raw as { data?: unknown }).data);
    if (!parsed.success || dataIsNumber) {
      const errors = parsed.success ? [] : parsed.error.issues.map((i) => ({ field: i.path.join('.') || '', reason: i.message }));
      if (dataIsNumber) errors.push({ field: 'data', reason: 'data must be a JSON object' });
      return { ok: false, errors };
    }
    ev = parsed.data;
  }
  const unstorable = storableErrors(raw as Record<string, unknown>, ev);
  if (unstorable) return { ok: false, errors: unstorable };
  let timeMs = receivedAtMs;
  if (ev.time) {
    timeMs = Date.parse(ev.time.replace(' ', 'T'));
    if (Number.isNaN(timeMs) || !calendarValid(ev.time)) return { ok: false, errors: [{ field: 'time', reason: 'time is not a valid date' }] };
    if (timeMs > receivedAtMs + limits.maxFutureMs) {
      return { ok: false, errors: [{ field: 'time', reason: `time is more than ${limitText(limits.maxFutureMs, 1000, 's')} in the future; check the producer's clock` }] };
    }
    if (timeMs < receivedAtMs - limits.maxPastMs) {
      return {
        ok: false,
        errors: [{ field: 'time', reason: `time is more than ${limitText(limits.maxPastMs, 86_400_000, ' days')} in the past (INGEST_MAX_PAST)` }],
      };
    }
  }
  return {
    ok: true,
    event: { id: ev.id, source: ev.source, type: ev.type, subject: ev.subject, timeMs, data: (ev.data ?? {}) as Record<string, unknown> },
  };
}

export interface EventError extends FieldError {
  index: number;
  id?: string;
}

/** Checks every event of a batch; returns all errors, each naming the event's index, id and field. */
export function checkBatch(items: unknown[], receivedAtMs: number, limits: TimeLimits): { events: UsageEvent[]; errors: EventError[] } {
  const events: UsageEvent[] = [];
  const errors: EventError[] = [];
  items.forEach((item, index) => {
    const r = checkEvent(item, receivedAtMs, limits);
    if (r.ok) events.push(r.event);
    else {
      const id = typeof (item as { id?: unknown })?.id === 'string' ? ((item as { id: string }).id) : undefined;
      for (const e of r.errors) errors.push({ index, ...(id !== undefined ? { id: id.slice(0, MAX_FIELD_LENGTH) } : {}), ...e });
    }
  });
  return { events, errors };
}

/**
 * Where a body that is not UTF-8 goes wrong, as an event error: the event, its id and the field
 * (or key) holding the first bad byte, and how many events the body has. `undefined` when that
 * byte is not inside an event's string (or the body is not JSON anyway).
 */
export function invalidUtf8Event(bytes: Uint8Array, err: Utf8Error): { count: number; error: EventError } | undefined {
  // Each bad byte becomes a lone surrogate: the text stays JSON and the byte is found in a string.
  const text = decodeUtf8Escaped(bytes);
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return undefined;
  }
  const items = Array.isArray(parsed) ? (parsed as unknown[]) : [parsed];
  const scan = scanJson(text);
  const at = decodeUtf8Escaped(bytes.subarray(0, err.offset)).length;
  const index = scan.starts.findIndex((start, i) => start <= at && at < scan.ends[i]!);
  if (index < 0 || index >= items.length) return undefined;
  const item = items[index];
  const path = illFormedPath(item);
  if (path === undefined) return undefined;
  const id = (item as { id?: unknown } | null)?.id;
  return {
    count: items.length,
    error: { index, ...(typeof id === 'string' ? { id: toWellFormed(id).slice(0, MAX_FIELD_LENGTH) } : {}), field: path.join('.'), reason: `body is ${err.message}` },
  };
}

/** The path of the first string or key in `value` that is not well-formed UTF-16 (depth-first, bounded). */
function illFormedPath(value: unknown, path: string[] = []): string[] | undefined {
  if (typeof value === 'string') return isWellFormed(value) ? undefined : path;
  if (typeof value !== 'object' || value === null) return undefined;
  // Far beyond the depth limit: the outermost attribute is name enough (and the stack is safe).
  if (path.length > 16 * MAX_DATA_DEPTH) return path.slice(0, 1);
  for (const [k, v] of Array.isArray(value) ? value.map((x, i) => [String(i), x] as const) : Object.entries(value)) {
    if (!isWellFormed(k)) return [...path, k];
    const found = illFormedPath(v, [...path, k]);
    if (found) return found;
  }
  return undefined;
}

/** The identity of an event: `(source, id)`. The source's length makes it unambiguous even when both contain NUL. */
export function eventKey(e: { source: string; id: string }): string {
  return `${e.source.length}:${e.source}\u0000${e.id}`;
}
