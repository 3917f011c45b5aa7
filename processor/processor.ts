import type { ConsumerMessages, JsMsg } from '@nats-io/jetstream';
import { ClickHouseError } from '@clickhouse/client';
import { parse as losslessParse, stringify as losslessStringify } from 'lossless-json';
import type { CatalogReplica } from '../common/catalog.ts';
import type { Store } from '../common/clickhouse.ts';
import { errorMessage } from '../common/errors.ts';
import type { Logger } from '../common/logger.ts';
import type { Metrics } from '../common/metrics.ts';
import { PROCESSOR_CONSUMER, type NatsClients } from '../common/nats.ts';
import { checkEvent, eventKey, RECEIVED_AT_HEADER, type TimeLimits, type UsageEvent } from '../ingest/index.ts';
import { Backfiller } from './backfill.ts';
import { DeadLetters, type DeadLetterEntry } from './dead-letter.ts';
import { DedupIndex } from './dedup.ts';
import { meterValues, type Meter, type MeterValue } from './meters.ts';

const UTF8 = new TextDecoder();

export interface ProcessorOptions {
  dedupWindowMs: number;
  dedupMaxMemoryKeys: number;
  fetchMessages: number;
  maxEvents: number;
  bufferBytes: number;
  lateAfterMs: number;
  maxDeliveries: number;
  limits: TimeLimits;
}

export interface ProcessorDeps {
  nats: NatsClients;
  store: Store;
  meters: CatalogReplica<Meter>;
  logger: Logger;
  metrics: Metrics;
  options: ProcessorOptions;
}

interface Candidate {
  event: UsageEvent;
  key: string;
  seq: number;
  index: number;
  receivedAtMs: number;
  /** The event as parsed (numbers exact), for the dead-letter stream if no meter can count it. */
  raw: unknown;
}

/** A row of `events_raw`, in the JSONEachRow shape the insert sends. */
interface RawRow {
  source: string;
  id: string;
  type: string;
  subject: string;
  time: number;
  ingested_at: number;
  received_at: number;
  data: string;
  stream_seq: number;
  meter_values: MeterValue[];
}

/**
 * Consumes the event stream and writes exact rows to ClickHouse. For each batch of messages
 * the order of effects is what carries the guarantees:
 *
 * 1. decode and validate every event; invalid ones are set aside for the dead-letter stream;
 * 2. drop duplicates of `(source, id)`: within the batch, in the memory index, and (when memory
 *    does not cover the whole window, e.g. after a restart or a failed insert) in `event_keys`;
 * 3. compute each meter's value; an event no meter can count goes to the dead-letter stream;
 * 4. one INSERT into `events_raw` (the materialized views fan it out to `event_keys`,
 *    `meter_values` and the rollups), with a deterministic deduplication token;
 * 5. record the keys in memory, park dead letters (awaiting JetStream's ack);
 * 6. ack the messages.
 *
 * A crash before 4 completes redelivers the batch and nothing was written. A crash between 4
 * and 6 redelivers a batch whose events are in `event_keys`: at start-up the index is loaded
 * from that table, so they are dropped as duplicates. Rows are never counted twice, and an
 * event is never acked before it is stored or parked.
 */
export class Processor {
  private readonly dedup: DedupIndex;
  private readonly deadLetters: DeadLetters;
  private readonly backfiller: Backfiller;
  private readonly log: Logger;
  private messages: ConsumerMessages | undefined;
  private loop: Promise<void> | undefined;
  private chain: Promise<unknown> = Promise.resolve();
  private verifyWithStoreUntilMs = 0;
  private pendingTimer: NodeJS.Timeout | undefined;
  private stopping = false;
  private failure: unknown;
  private unsubscribe: (() => void) | undefined;

  constructor(private readonly deps: ProcessorDeps) {
    this.log = deps.logger.child({ component: 'processor' });
    this.dedup = new DedupIndex(deps.options.dedupWindowMs, deps.options.dedupMaxMemoryKeys);
    this.deadLetters = new DeadLetters(deps.nats);
    this.backfiller = new Backfiller(deps.store, this.log);
  }

  async start(): Promise<void> {
    await this.loadDedupIndex();
    // A meter created while we run is backfilled between batches, on the same serial chain as
    // the batches, so no event is both in flight without it and missed by the backfill.
    this.unsubscribe = this.deps.meters.onChange((_key, next, prev) => {
      if (next && next.id !== prev?.id) void this.serial(() => this.backfiller.run(next));
    });
    await this.serial(() => this.backfiller.runPending(this.deps.meters.list()));
    const consumer = await this.deps.nats.js.consumers.get(this.deps.nats.topology.stream, PROCESSOR_CONSUMER);
    // Bounded by bytes too: a few hundred large batch messages would otherwise overrun the
    // connection's pending limit (a slow consumer), stalling delivery until the pull expires.
    this.messages = await consumer.consume({ max_bytes: this.deps.options.bufferBytes });
    this.loop = this.run(this.messages).catch((err: unknown) => {
      // The consumer is gone (e.g. deleted by an operator): nothing is acked any more, so no
      // event is lost, but this process no longer makes progress. Readiness reports it.
      this.failure = err;
      this.log.fatal({ err }, 'processor stopped consuming; restart the process');
    });
    this.pendingTimer = setInterval(() => void this.reportPending(), 5_000);
    this.pendingTimer.unref();
    this.log.info({ dedupKeys: this.dedup.size }, 'processor started');
  }

  /** False once the consume loop has died; `/readyz` reports it. */
  get healthy(): boolean {
    return this.failure === undefined;
  }

  /** Stops taking messages, finishes the batch in flight (drain), then returns. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.unsubscribe?.();
    if (this.pendingTimer) clearInterval(this.pendingTimer);
    this.messages?.stop();
    await this.loop;
    await this.chain;
  }

  private serial<T>(task: () => Promise<T>): Promise<T> {
    const next = this.chain.then(task, task);
    this.chain = next.catch((err) => this.log.error({ err }, 'processor task failed'));
    return next;
  }

  private async run(messages: ConsumerMessages): Promise<void> {
    let batch: JsMsg[] = [];
    let events = 0;
    for await (const m of messages) {
      batch.push(m);
      // A cheap estimate of the events in a message (about 200 bytes each) bounds the batch
      // without parsing twice.
      events += 1 + Math.floor(m.data.length / 200);
      // Flush when the client's buffer is drained (low latency when idle) or the batch is full.
      if (messages.getPending() === 0 || batch.length >= this.deps.options.fetchMessages || events >= this.deps.options.maxEvents) {
        const toHandle = batch;
        batch = [];
        events = 0;
        await this.serial(() => this.handle(toHandle));
      }
      if (this.stopping) break;
    }
    if (batch.length > 0) await this.serial(() => this.handle(batch));
  }

  private async reportPending(): Promise<void> {
    try {
      const info = await this.deps.nats.jsm.consumers.info(this.deps.nats.topology.stream, PROCESSOR_CONSUMER);
      this.deps.metrics.processorConsumerPending.set(info.num_pending);
    } catch {
      /* NATS briefly away: the next tick reports */
    }
  }

  private async loadDedupIndex(): Promise<void> {
    const { ch, db } = this.deps.store;
    const now = Date.now();
    const from = now - this.deps.options.dedupWindowMs;
    const rs = await ch.query({
      query: `SELECT source, id, toUnixTimestamp64Milli(ingested_at) AS at FROM ${db}.event_keys
              WHERE ingested_at >= fromUnixTimestamp64Milli({from:Int64}) ORDER BY ingested_at DESC LIMIT {limit:UInt64}`,
      query_params: { from, limit: this.deps.options.dedupMaxMemoryKeys },
      format: 'JSONCompactEachRow',
    });
    const rows = await rs.json<[string, string, string]>();
    const entries: [string, number][] = rows.reverse().map(([source, id, at]) => [eventKey({ source, id }), Number(at)]);
    const full = rows.length < this.deps.options.dedupMaxMemoryKeys;
    this.dedup.load(entries, full ? 0 : (entries[0]?.[1] ?? now));
    this.deps.metrics.processorDedupKeys.set(this.dedup.size);
  }

  private async handle(msgs: JsMsg[]): Promise<void> {
    const { metrics, options } = this.deps;
    const dead: DeadLetterEntry[] = [];
    const candidates: Candidate[] = [];

    // 1. decode and validate
    for (const m of msgs) {
      const header = m.headers?.get(RECEIVED_AT_HEADER);
      const receivedAtMs = header ? Number(header) : Math.floor(Number(m.info.timestampNanos) / 1e6);
      let parsed: unknown;
      const text = UTF8.decode(m.data);
      try {
        parsed = losslessParse(text);
      } catch (err) {
        dead.push(this.deadLetter(`malformed JSON: ${errorMessage(err)}`, m.seq, -1, receivedAtMs, text));
        continue;
      }
      const items = Array.isArray(parsed) ? parsed : [parsed];
      items.forEach((item, index) => {
        const r = checkEvent(item, receivedAtMs, options.limits);
        if (r.ok) candidates.push({ event: r.event, key: eventKey(r.event), seq: m.seq, index, receivedAtMs, raw: item });
        else dead.push(this.deadLetter(r.errors.map((e) => (e.field ? `${e.field}: ${e.reason}` : e.reason)).join('; '), m.seq, index, receivedAtMs, losslessStringify(item) ?? 'null'));
      });
    }

    // 2. exact dedup
    const now = Date.now();
    const inBatch = new Set<string>();
    let fresh: Candidate[] = [];
    for (const c of candidates) {
      if (inBatch.has(c.key) || this.dedup.has(c.key, now)) continue;
      inBatch.add(c.key);
      fresh.push(c);
    }
    if (fresh.length > 0 && (this.dedup.needsStoreLookup(now) || now < this.verifyWithStoreUntilMs)) {
      const stored = await this.storedKeys(fresh, now - options.dedupWindowMs);
      metrics.processorStoreLookups.inc(fresh.length);
      fresh = fresh.filter((c) => !stored.has(c.key));
    }
    metrics.processorDuplicates.inc(candidates.length - fresh.length);

    // 3. meter values
    const meters = this.deps.meters.list();
    const rows: RawRow[] = [];
    const acceptedKeys: string[] = [];
    for (const c of fresh) {
      const mv = meterValues(c.event, meters);
      if (!mv.ok) {
        dead.push(this.deadLetter(mv.reason, c.seq, c.index, c.receivedAtMs, losslessStringify(c.raw) ?? 'null'));
        continue;
      }
      if (now - c.event.timeMs > options.lateAfterMs) metrics.processorLateEvents.inc();
      acceptedKeys.push(c.key);
      rows.push({
        source: c.event.source,
        id: c.event.id,
        type: c.event.type,
        subject: c.event.subject,
        time: c.event.timeMs,
        ingested_at: now,
        received_at: c.receivedAtMs,
        data: losslessStringify(c.event.data) ?? '{}',
        stream_seq: c.seq,
        meter_values: mv.values,
      });
    }

    // 4. one insert, then 5. remember keys and park dead letters, then 6. ack
    try {
      if (rows.length > 0) await this.insert(rows, msgs);
    } catch (err) {
      await this.onInsertFailure(err, msgs, now);
      return;
    }
    this.dedup.add(acceptedKeys, now);
    metrics.processorDedupKeys.set(this.dedup.size);
    for (const d of dead) {
      await this.deadLetters.park(d);
      metrics.processorDeadLettered.inc({ reason: d.reason.startsWith('meter') ? 'meter_value' : d.reason.startsWith('store') ? 'store_rejected' : 'invalid_event' });
    }
    metrics.processorEvents.inc({ outcome: 'stored' }, rows.length);
    metrics.processorEvents.inc({ outcome: 'duplicate' }, candidates.length - fresh.length);
    metrics.processorEvents.inc({ outcome: 'dead_lettered' }, dead.length);
    for (const m of msgs) m.ack();
  }

  private deadLetter(reason: string, streamSeq: number, index: number, receivedAtMs: number, eventText: string): DeadLetterEntry {
    return { reason, stream: this.deps.nats.topology.stream, streamSeq, index, receivedAtMs, deadLetteredAt: new Date().toISOString(), event: eventText };
  }

  private async insert(rows: RawRow[], msgs: JsMsg[]): Promise<void> {
    const { ch, db } = this.deps.store;
    const end = this.deps.metrics.processorInsertSeconds.startTimer();
    const seqs = msgs.map((m) => m.seq);
    await ch.insert({
      table: `${db}.events_raw`,
      values: rows,
      format: 'JSONEachRow',
      clickhouse_settings: {
        // Same messages, same rows, same token: a retried insert of a batch that did land is a no-op.
        insert_deduplication_token: `${this.deps.nats.topology.stream}:${Math.min(...seqs)}-${Math.max(...seqs)}:${rows.length}`,
        deduplicate_blocks_in_dependent_materialized_views: 1,
        date_time_input_format: 'best_effort',
      },
    });
    end();
    this.deps.metrics.processorInsertRows.inc(rows.length);
  }

  private async onInsertFailure(err: unknown, msgs: JsMsg[], now: number): Promise<void> {
    // The insert may have landed even though we saw an error (a timeout): until redeliveries
    // are through, fresh keys are checked against the store as well as memory.
    this.verifyWithStoreUntilMs = now + 5 * 60_000;
    const rejected = err instanceof ClickHouseError;
    if (rejected && msgs.length > 1) {
      // The store refused the data: find the message it refuses by inserting one at a time.
      this.log.warn({ err: errorMessage(err), messages: msgs.length }, 'insert rejected; retrying message by message');
      for (const m of msgs) await this.handle([m]);
      return;
    }
    const m = msgs[0];
    if (rejected && m && m.info.deliveryCount >= this.deps.options.maxDeliveries) {
      const text = UTF8.decode(m.data);
      await this.deadLetters.park(this.deadLetter(`store rejected the batch: ${errorMessage(err)}`, m.seq, -1, Date.now(), text));
      this.deps.metrics.processorDeadLettered.inc({ reason: 'store_rejected' });
      m.ack();
      return;
    }
    this.log.error({ err: errorMessage(err), messages: msgs.length }, 'insert failed; messages will be redelivered');
    for (const x of msgs) x.nak(Math.min(30_000, 1_000 * 2 ** Math.min(x.info.deliveryCount, 5)));
  }

  private async storedKeys(cands: Candidate[], sinceMs: number): Promise<Set<string>> {
    const { ch, db } = this.deps.store;
    const found = new Set<string>();
    for (let i = 0; i < cands.length; i += 2_000) {
      const part = cands.slice(i, i + 2_000);
      const rs = await ch.query({
        query: `SELECT source, id FROM ${db}.event_keys
                WHERE ingested_at >= fromUnixTimestamp64Milli({since:Int64}) AND source IN {sources:Array(String)} AND id IN {ids:Array(String)}`,
        query_params: { since: sinceMs, sources: [...new Set(part.map((c) => c.event.source))], ids: part.map((c) => c.event.id) },
        format: 'JSONCompactEachRow',
      });
      for (const [source, id] of await rs.json<[string, string]>()) found.add(eventKey({ source, id }));
    }
    return found;
  }
}
