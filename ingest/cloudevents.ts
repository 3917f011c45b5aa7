import { z } from 'zod';

/**
 * CloudEvents 1.0 JSON as Meterline accepts it (the format OpenMeter's API and SDKs use).
 * Pure: the same checks run at the HTTP edge and again in the processor for events that were
 * published straight onto NATS. `now` is a parameter.
 */
export const MAX_FIELD_LENGTH = 256;

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
      .regex(/^application\/(.+\+)?json\b/i, 'datacontenttype must be application/json')
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

export type EventCheck = { ok: true; event: UsageEvent } | { ok: false; errors: FieldError[] };

export function checkEvent(raw: unknown, receivedAtMs: number, limits: TimeLimits): EventCheck {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    return { ok: false, errors: [{ field: '', reason: 'an event must be a JSON object' }] };
  }
  const parsed = CloudEventSchema.safeParse(raw);
  if (!parsed.success) {
    return { ok: false, errors: parsed.error.issues.map((i) => ({ field: i.path.join('.') || '', reason: i.message })) };
  }
  const ev = parsed.data;
  let timeMs = receivedAtMs;
  if (ev.time) {
    timeMs = Date.parse(ev.time.replace(' ', 'T'));
    if (Number.isNaN(timeMs)) return { ok: false, errors: [{ field: 'time', reason: 'time is not a valid date' }] };
    if (timeMs > receivedAtMs + limits.maxFutureMs) {
      return { ok: false, errors: [{ field: 'time', reason: `time is more than ${Math.round(limits.maxFutureMs / 1000)}s in the future; check the producer's clock` }] };
    }
    if (timeMs < receivedAtMs - limits.maxPastMs) {
      return {
        ok: false,
        errors: [{ field: 'time', reason: `time is more than ${Math.round(limits.maxPastMs / 86_400_000)} days in the past (INGEST_MAX_PAST)` }],
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

/** The identity of an event: `(source, id)`. */
export function eventKey(e: { source: string; id: string }): string {
  return `${e.source}\u0000${e.id}`;
}
