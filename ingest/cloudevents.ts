import { isLosslessNumber } from 'lossless-json';
import { z } from 'zod';
import { formatDurationMs } from '../common/duration.ts';

/**
 * CloudEvents 1.0 JSON as Meterline accepts it (the format OpenMeter's API and SDKs use).
 * Pure: the same checks run at the HTTP edge and again in the processor for events that were
 * published straight onto NATS. `now` is a parameter.
 */
export const MAX_FIELD_LENGTH = 256;

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

/** The identity of an event: `(source, id)`. The source's length makes it unambiguous even when both contain NUL. */
export function eventKey(e: { source: string; id: string }): string {
  return `${e.source.length}:${e.source}\u0000${e.id}`;
}
