import { stringify as losslessStringify } from 'lossless-json';
import { errorMessage } from '../common/errors.ts';
import { parseExact, type ExactJson } from '../common/json-text.ts';
import { TimeSlice } from '../common/time-slice.ts';
import { checkEvent, eventKey, RECEIVED_AT_HEADER, type TimeLimits, type UsageEvent } from '../ingest/index.ts';
import { meterValues, type Meter, type MeterValue } from '../meter/index.ts';
import type { DeadLetterEntry } from './dead-letter.ts';
import type { RawRow } from './raw-rows.ts';
import { ledgerRows, type LedgerEntry } from './write-ledger.ts';

/**
 * The steps of a batch as functions: decode and validate, dedup decisions, meter values, the
 * rows. No I/O; the clock and the dedup index are passed in.
 */

const UTF8 = new TextDecoder();
/** Strict: bytes that are not UTF-8 are refused, never replaced (two distinct ids must not become one). */
export const UTF8_STRICT = new TextDecoder('utf-8', { fatal: true });

/** Replaying a recorded insert rebuilds the events it held: the time limits were checked then. */
const NO_LIMITS: TimeLimits = { maxFutureMs: Number.POSITIVE_INFINITY, maxPastMs: Number.POSITIVE_INFINITY };

/** What the pipeline reads of a stream message (a JetStream message satisfies it). */
export interface MessageData {
  seq: number;
  data: Uint8Array;
  headers?: { get(key: string): string };
  info: { timestampNanos: number };
}

export interface Candidate {
  partition: number;
  event: UsageEvent;
  key: string;
  seq: number;
  index: number;
  receivedAtMs: number;
  /** The event as parsed (numbers exact), for the dead-letter stream if no meter can count it. */
  raw: unknown;
  /** Parsed by lossless-json (its numbers are LosslessNumbers); otherwise by JSON.parse, exactly. */
  lossless: boolean;
}

/** Builds a dead-letter entry: (reason, stream sequence, index in the message, received at, event text). */
export type DeadLetterFn = (reason: string, streamSeq: number, index: number, receivedAtMs: number, eventText: string) => DeadLetterEntry;

export function deadLetterFn(stream: string, now: () => number): DeadLetterFn {
  return (reason, streamSeq, index, receivedAtMs, event) => ({ reason, stream, streamSeq, index, receivedAtMs, deadLetteredAt: new Date(now()).toISOString(), event });
}

/** The dead letter of an event the store refused. */
export function refusedLetter(letter: DeadLetterFn, c: Candidate, err: unknown): DeadLetterEntry {
  return letter(`store rejected the event: ${errorMessage(err)}`, c.seq, c.index, c.receivedAtMs, losslessStringify(c.raw) ?? 'null');
}

/** The `events_raw` row of an accepted event: a function of the event, so a replay rebuilds it exactly. */
export function rawRow(c: Candidate, values: MeterValue[], ingestedAtMs: number): RawRow {
  return {
    source: c.event.source,
    id: c.event.id,
    type: c.event.type,
    subject: c.event.subject,
    time: c.event.timeMs,
    ingested_at: ingestedAtMs,
    received_at: c.receivedAtMs,
    data: (c.lossless ? losslessStringify(c.event.data) : JSON.stringify(c.event.data)) ?? '{}',
    stream_seq: c.seq,
    meter_values: values,
  };
}

/**
 * When a message was received: the header ingest and the router set, else the stream's timestamp
 * in nanoseconds (as the client reads it from the ack subject: `parseInt`, a double), in ms.
 */
export function receivedAt(header: string | undefined, timestampNanos: number): number {
  return header ? Number(header) : Math.floor(timestampNanos / 1e6);
}

/** JetStream's stored-message time (RFC 3339 with nanoseconds) as the client's `timestampNanos` would read it. */
export function storedTimestampNanos(ts: string): number {
  const m = /^(.*?)(?:\.(\d+))?Z$/.exec(ts);
  const nanos = m ? BigInt(Date.parse(`${m[1]}Z`)) * 1_000_000n + BigInt((m[2] ?? '').padEnd(9, '0').slice(0, 9)) : BigInt(Date.parse(ts)) * 1_000_000n;
  return parseInt(nanos.toString(), 10);
}

/** A cheap estimate of the events in a message (about 200 bytes each), to bound a batch without parsing twice. */
export const eventsEstimate = (m: { data: Uint8Array }) => 1 + Math.floor(m.data.length / 200);

/** The insert's deduplication token: the stream, the batch's sequence range and its row count. */
export function batchToken(stream: string, seqs: number[], rows: number): string {
  return `${stream}:${Math.min(...seqs)}-${Math.max(...seqs)}:${rows}`;
}

/** Step 1, pure CPU work: decode and validate every event of the messages (each with its partition). */
export async function decodeMessages(batch: { partition: number; m: MessageData }[], limits: TimeLimits, letter: DeadLetterFn): Promise<{ candidates: Candidate[]; dead: DeadLetterEntry[] }> {
  const dead: DeadLetterEntry[] = [];
  const candidates: Candidate[] = [];
  const slice = new TimeSlice();
  for (const { partition, m } of batch) {
    if (slice.due()) await slice.pause();
    const receivedAtMs = receivedAt(m.headers?.get(RECEIVED_AT_HEADER), Number(m.info.timestampNanos));
    let parsed: ExactJson;
    let text: string;
    try {
      text = UTF8_STRICT.decode(m.data);
    } catch {
      dead.push(letter('the message is not valid UTF-8: send events as UTF-8 JSON', m.seq, -1, receivedAtMs, UTF8.decode(m.data)));
      continue;
    }
    try {
      parsed = parseExact(text);
    } catch (err) {
      dead.push(letter(`malformed JSON: ${errorMessage(err)}`, m.seq, -1, receivedAtMs, text));
      continue;
    }
    let texts: string[] | undefined;
    parsed.items.forEach((item, index) => {
      const r = checkEvent(item, receivedAtMs, limits);
      if (r.ok) candidates.push({ partition, event: r.event, key: eventKey(r.event), seq: m.seq, index, receivedAtMs, raw: item, lossless: parsed.lossless[index]! });
      // Parked as received: re-serialising an event refused for its depth could overflow the stack.
      else dead.push(letter(r.errors.map((e) => (e.field ? `${e.field}: ${e.reason}` : e.reason)).join('; '), m.seq, index, receivedAtMs, (texts ??= parsed.texts())[index]!));
    });
  }
  return { candidates, dead };
}

/**
 * Step 2 in memory: the first copy of each key that is neither in `writing` (the batch being
 * written) nor known to the partition's index (`known`).
 */
export async function freshCandidates(candidates: Candidate[], writing: ReadonlySet<string>, known: (c: Candidate) => boolean): Promise<Candidate[]> {
  const inBatch = new Set<string>();
  const fresh: Candidate[] = [];
  const slice = new TimeSlice();
  for (const c of candidates) {
    if (slice.due()) await slice.pause();
    if (inBatch.has(c.key) || writing.has(c.key) || known(c)) continue;
    inBatch.add(c.key);
    fresh.push(c);
  }
  return fresh;
}

/** Step 3: each meter's value and the event's row; an event no meter can count is a dead letter. */
export async function meterRows(fresh: Candidate[], meters: Meter[], ingestedAtMs: number, letter: DeadLetterFn): Promise<{ rows: RawRow[]; accepted: Candidate[]; dead: DeadLetterEntry[] }> {
  const rows: RawRow[] = [];
  const accepted: Candidate[] = [];
  const dead: DeadLetterEntry[] = [];
  const slice = new TimeSlice();
  for (const c of fresh) {
    if (slice.due()) await slice.pause();
    const mv = meterValues(c.event, meters);
    if (!mv.ok) {
      dead.push(letter(mv.reason, c.seq, c.index, c.receivedAtMs, losslessStringify(c.raw) ?? 'null'));
      continue;
    }
    accepted.push(c);
    rows.push(rawRow(c, mv.values, ingestedAtMs));
  }
  return { rows, accepted, dead };
}

/** The keys of the events stored, by partition, and how many of them are late (older than `lateAfterMs`). */
export function keysByPartition(accepted: Candidate[], nowMs: number, lateAfterMs: number): { byPartition: Map<number, string[]>; late: number } {
  const byPartition = new Map<number, string[]>();
  let late = 0;
  for (const c of accepted) {
    let keys = byPartition.get(c.partition);
    if (!keys) byPartition.set(c.partition, (keys = []));
    keys.push(c.key);
    if (nowMs - c.event.timeMs > lateAfterMs) late++;
  }
  return { byPartition, late };
}

/** A stored message of a recorded insert, as read back from the stream. */
export interface StoredMessage {
  data: Uint8Array;
  receivedAtMs: number;
}

export type Rebuilt = { rows: RawRow[]; candidates: Candidate[] } | { gone: string };

/** The rows of a recorded insert, rebuilt from the stream's messages exactly as they were written. */
export function rebuildRows(entry: LedgerEntry, stored: ReadonlyMap<number, StoredMessage | null>): Rebuilt {
  const messages = new Map<number, { receivedAtMs: number; items: unknown[]; lossless: boolean[] }>();
  for (const [seq] of entry.messages) {
    const sm = stored.get(seq);
    if (!sm) return { gone: `message ${seq} is no longer in the stream` };
    let parsed: ExactJson;
    try {
      parsed = parseExact(UTF8_STRICT.decode(sm.data));
    } catch (err) {
      return { gone: `message ${seq} no longer parses: ${errorMessage(err)}` };
    }
    messages.set(seq, { receivedAtMs: sm.receivedAtMs, items: parsed.items, lossless: parsed.lossless });
  }
  const rows: RawRow[] = [];
  const candidates: Candidate[] = [];
  for (const { seq, index } of ledgerRows(entry)) {
    const m = messages.get(seq)!;
    const r = checkEvent(m.items[index], m.receivedAtMs, NO_LIMITS);
    if (!r.ok) return { gone: `event ${index} of message ${seq} no longer checks` };
    const mv = meterValues(r.event, entry.meters);
    if (!mv.ok) return { gone: `event ${index} of message ${seq}: ${mv.reason}` };
    const c: Candidate = { partition: -1, event: r.event, key: eventKey(r.event), seq, index, receivedAtMs: m.receivedAtMs, raw: m.items[index], lossless: m.lossless[index]! };
    candidates.push(c);
    rows.push(rawRow(c, mv.values, entry.ingestedAtMs));
  }
  return { rows, candidates };
}
