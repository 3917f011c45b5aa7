import { afterEach, describe, expect, it } from 'vitest';
import { ClickHouseError } from '@clickhouse/client';
import { silentLogger } from '../common/logger.ts';
import { createMetrics } from '../common/metrics.ts';
import { eventKey } from '../ingest/index.ts';
import type { Meter } from '../meter/index.ts';
import type { Msg, Subscription } from './consumer.ts';
import type { DeadLetterEntry } from './dead-letter.ts';
import type { KeyLookups, KeyPage } from './dedup-store.ts';
import type { OwnershipHandlers, Unit } from './ownership.ts';
import type { StoredMessage } from './pipeline.ts';
import { Processor, type ProcessorParts } from './processor.ts';
import type { RawRow } from './raw-rows.ts';
import { ledgerEntry, type LedgerEntry, type LedgerSlot, type PendingWrite } from './write-ledger.ts';
import type { EventKeyRow, Ledger, MeterValueRow, RowSink } from './writer.ts';

// The processor over in-memory fakes of its own seams (no NATS, no ClickHouse): what it does,
// in which order, as seen from the stores. `effects` is the one log every fake writes to.

const METER: Meter = { id: 'm-tokens', slug: 'tokens', eventType: 'api.call', aggregation: 'SUM', valueProperty: '$.tokens', createdAt: '2024-01-01T00:00:00Z' };
const SOURCE = 'unit';

const event = (id: string, tokens = 1) => ({ specversion: '1.0', id, source: SOURCE, type: 'api.call', subject: 'cust-1', data: { tokens } });
const encode = (events: object[]) => new TextEncoder().encode(JSON.stringify(events));

/** A subscription fed by the test; it ends once stopped. */
class FakeSubscription implements Subscription {
  private readonly items: Msg[] = [];
  private wake: (() => void) | undefined;
  private stopped = false;

  push(m: Msg): void {
    this.items.push(m);
    this.wake?.();
  }

  stop(): void {
    this.stopped = true;
    this.wake?.();
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<Msg> {
    for (;;) {
      while (this.items.length > 0) yield this.items.shift()!;
      if (this.stopped) return;
      await new Promise<void>((r) => (this.wake = r));
      this.wake = undefined;
    }
  }
}

/** `events_raw` and its views as far as the processor can tell: a repeated token is skipped, a refused block stores nothing. */
class FakeSink implements RowSink {
  readonly calls: { rows: RawRow[]; token: string }[] = [];
  readonly tokens = new Set<string>();
  /** event_keys: key → ingested at. */
  readonly keys = new Map<string, number>();
  /** meter_values: `${meter}\0${key}`. */
  readonly values = new Set<string>();
  /** Returns the error an insert fails with, if any. */
  fail: (rows: RawRow[], token: string) => unknown = () => undefined;

  constructor(private readonly effects: string[]) {}

  async insertRaw(rows: RawRow[], token: string): Promise<void> {
    this.calls.push({ rows: structuredClone(rows), token });
    this.effects.push(`insert:${token}`);
    const err = this.fail(rows, token);
    if (err) throw err;
    if (this.tokens.has(token)) return;
    this.tokens.add(token);
    for (const r of rows) {
      this.keys.set(eventKey(r), r.ingested_at);
      for (const v of r.meter_values) this.values.add(`${v.meter_id}\0${eventKey(r)}`);
    }
  }

  async insertKeys(rows: EventKeyRow[], token: string): Promise<void> {
    this.effects.push(`insertKeys:${token}`);
    for (const r of rows) this.keys.set(eventKey(r), r.ingested_at);
  }

  async insertValues(rows: MeterValueRow[], token: string): Promise<void> {
    this.effects.push(`insertValues:${token}`);
    for (const r of rows) this.values.add(`${r.meter_id}\0${eventKey(r)}`);
  }

  storedIds(): string[] {
    return [...this.keys.keys()].map((k) => k.slice(k.indexOf('\0') + 1)).sort();
  }
}

class FakeLookups implements KeyLookups {
  lookups = 0;

  constructor(private readonly sink: FakeSink) {}

  async storedKeys(events: readonly { source: string; id: string }[], sinceMs: number, table: 'event_keys' | 'meter_values' = 'event_keys'): Promise<Set<string>> {
    this.lookups++;
    if (table === 'meter_values') return new Set([...this.sink.values].filter((v) => events.some((e) => v.endsWith(`\0${eventKey(e)}`))));
    return new Set(events.map(eventKey).filter((k) => (this.sink.keys.get(k) ?? -Infinity) >= sinceMs));
  }

  async newestKeys(_partition: number, _partitions: number, fromMs: number, limit: number): Promise<[string, number][]> {
    return [...this.sink.keys].filter(([, at]) => at >= fromMs).sort((a, b) => a[1] - b[1]).slice(-limit);
  }

  async keyPage(): Promise<KeyPage> {
    return { count: 0, after: { s: '', i: '' }, packed: new Uint8Array(), others: [] };
  }
}

class FakeLedger implements Ledger {
  readonly entries = new Map<string, LedgerEntry>();
  private n = 0;

  constructor(private readonly effects: string[]) {}

  async record(entry: LedgerEntry): Promise<LedgerSlot> {
    const key = `w.unit.${this.n++}`;
    this.entries.set(key, entry);
    this.effects.push(`record:${entry.token}`);
    return { key, revision: 1 };
  }

  async clear(slot: LedgerSlot): Promise<void> {
    this.effects.push(`clear:${this.entries.get(slot.key)?.token}`);
    this.entries.delete(slot.key);
  }

  keep(slot: LedgerSlot): void {
    this.effects.push(`keep:${this.entries.get(slot.key)?.token}`);
  }

  async pendingFor(unit: number): Promise<PendingWrite[]> {
    return [...this.entries].filter(([, e]) => e.units.includes(unit)).map(([key, entry]) => ({ key, revision: 1, entry }));
  }

  async done(p: PendingWrite): Promise<void> {
    this.effects.push(`done:${p.entry.token}`);
    this.entries.delete(p.key);
  }
}

const running: Processor[] = [];
afterEach(async () => {
  for (const p of running.splice(0)) await p.stop();
});

/** A processor owning partition 0 of a one-partition stream, over fakes; time moves only when it waits. */
function harness(shared?: { sink: FakeSink; effects: string[]; ledger: FakeLedger }) {
  const effects = shared?.effects ?? [];
  const sink = shared?.sink ?? new FakeSink(effects);
  const ledger = shared?.ledger ?? new FakeLedger(effects);
  const lookups = new FakeLookups(sink);
  const subs = new Map<Unit, FakeSubscription>();
  const parked: DeadLetterEntry[] = [];
  const stream = new Map<number, StoredMessage>();
  const h = {
    clock: 1_700_000_000_000,
    effects,
    sink,
    ledger,
    lookups,
    parked,
    stream,
    holds: true,
    maintenanceHolder: undefined as string | undefined,
    maintenanceChecks: 0,
    working: 0,
    processor: undefined as unknown as Processor,
    /** Delivers a message of partition 0 (and keeps it in the stream, as JetStream does after an ack). */
    deliver(seq: number, events: object[], deliveryCount = 1): void {
      const data = encode(events);
      stream.set(seq, { data, receivedAtMs: h.clock });
      const m: Msg = {
        seq,
        data,
        info: { timestampNanos: h.clock * 1e6, deliveryCount },
        ack: () => void effects.push(`ack:${seq}`),
        nak: () => void effects.push(`nak:${seq}`),
        working: () => void h.working++,
      };
      subs.get(0)!.push(m);
    },
    async start(): Promise<void> {
      running.push(h.processor);
      await h.processor.start();
    },
  };
  const parts: ProcessorParts = {
    stream: 'EVENTS',
    partitions: 1,
    source: {
      consume: async (unit) => {
        effects.push(`consume:${unit}`);
        const sub = new FakeSubscription();
        subs.set(unit, sub);
        return sub;
      },
      pending: async () => ({ pending: 0, ackPending: 0 }),
    },
    publisher: { maxPayload: () => 1024 * 1024, publish: async () => undefined },
    reader: { read: async (seq) => stream.get(seq) ?? null },
    rows: sink,
    lookups,
    deadLetters: {
      park: async (d) => {
        effects.push(`park:${d.streamSeq}:${d.index}`);
        parked.push(d);
      },
    },
    meters: { list: () => [METER], onChange: () => () => undefined },
    leases: {
      holderOf: async () => {
        h.maintenanceChecks++;
        return h.maintenanceHolder;
      },
      withLease: async (_name, fn) => ({ ran: true, value: await fn() }),
    },
    openOwnership: async (handlers: OwnershipHandlers) => ({
      holder: 'unit',
      start: () => handlers.acquired(0),
      stop: () => handlers.released(0, 'stop'),
      holds: () => h.holds,
      partitions: () => [0],
    }),
    openLedger: async () => ledger,
    openBackfiller: async () => ({ pending: async () => [], run: async () => undefined }),
    logger: silentLogger(),
    metrics: createMetrics({ defaults: false }),
    options: {
      dedupWindowMs: 86_400_000,
      dedupMaxMemoryKeys: 100_000,
      fetchMessages: 100,
      maxEvents: 10_000,
      bufferBytes: 1 << 20,
      lateAfterMs: 3_600_000,
      maxDeliveries: 10,
      limits: { maxFutureMs: Number.POSITIVE_INFINITY, maxPastMs: Number.POSITIVE_INFINITY },
      leaseTtlMs: 30_000,
      handoverVerifyMs: 60_000,
    },
    now: () => h.clock,
    // Waiting moves the clock; the event loop gets a turn so the test can look in between.
    sleep: async (ms) => {
      h.clock += ms;
      await new Promise((r) => setImmediate(r));
    },
  };
  h.processor = new Processor(parts);
  return h;
}

/** Lets the processor run until `cond` holds (event-loop turns, not time). */
async function until(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 20_000; i++) {
    if (cond()) return;
    await new Promise((r) => setImmediate(r));
  }
  throw new Error(`never happened: ${what}`);
}

const at = (effects: string[], e: string) => {
  const i = effects.indexOf(e);
  if (i < 0) throw new Error(`no ${e} in ${effects.join(', ')}`);
  return i;
};

describe('Processor: the order of effects of a batch', () => {
  it('records the ledger entry, then inserts, then clears the entry, then acks', async () => {
    const h = harness();
    await h.start();
    h.deliver(1, [event('a', 2), event('b', 3)]);
    await until(() => h.effects.includes('ack:1'), 'the ack');
    const token = 'EVENTS:1-1:2';
    expect(h.effects.filter((e) => !e.startsWith('consume'))).toEqual([`record:${token}`, `insert:${token}`, `clear:${token}`, 'ack:1']);
    expect(h.sink.storedIds()).toEqual(['a', 'b']);
    expect(h.sink.calls[0]!.rows.map((r) => r.meter_values.map((v) => v.value))).toEqual([['2'], ['3']]);
    expect(h.ledger.entries.size).toBe(0);
  });

  it('repeats a failed insert identically (same rows, same token), acking nothing meanwhile, and reports the partition stuck after a minute', async () => {
    const h = harness();
    await h.start();
    let storeBack = false;
    h.sink.fail = () => (storeBack ? undefined : new Error('connect ECONNREFUSED 127.0.0.1:8123'));
    const startedAt = h.clock;
    h.deliver(1, [event('a'), event('b')]);
    await until(() => h.clock - startedAt >= 60_000, 'a minute of retries');
    expect(h.processor.stuckPartitions().map((s) => s.partition)).toEqual([0]);
    expect(h.effects.some((e) => e.startsWith('ack') || e.startsWith('nak') || e.startsWith('clear'))).toBe(false);
    expect(h.working).toBeGreaterThan(0);
    storeBack = true;
    await until(() => h.effects.includes('ack:1'), 'the ack');
    expect(h.sink.calls.length).toBeGreaterThan(2);
    for (const call of h.sink.calls) expect(call).toEqual(h.sink.calls[0]);
    expect(h.effects.filter((e) => e.startsWith('record'))).toHaveLength(1);
    expect(at(h.effects, 'clear:EVENTS:1-1:2')).toBeLessThan(at(h.effects, 'ack:1'));
    expect(h.processor.stuckPartitions()).toEqual([]);
  });

  it('gives a write up when its partition is lost: the ledger entry is kept for the next owner and the messages go back, unacked', async () => {
    const h = harness();
    await h.start();
    h.sink.fail = () => new Error('connect ECONNREFUSED 127.0.0.1:8123');
    h.deliver(1, [event('a')]);
    await until(() => h.sink.calls.length >= 3, 'a few attempts');
    h.holds = false;
    await until(() => h.effects.includes('nak:1'), 'the nak');
    expect(h.effects).toContain('keep:EVENTS:1-1:1');
    expect(h.effects.some((e) => e.startsWith('clear') || e.startsWith('ack'))).toBe(false);
    expect(h.ledger.entries.size).toBe(1);
  });

  it('halves a refused batch down to the refused event: only it is dead-lettered, the rest is stored and the message acked', async () => {
    const h = harness();
    await h.start();
    h.sink.fail = (rows) => (rows.some((r) => r.id === 'bad') ? new ClickHouseError({ message: 'cannot parse', code: '27', type: 'CANNOT_PARSE_INPUT_ASSERTION_FAILED' }) : undefined);
    h.deliver(1, [event('a'), event('b'), event('bad'), event('c')]);
    await until(() => h.effects.includes('ack:1'), 'the ack');
    const token = 'EVENTS:1-1:4';
    expect(h.sink.calls.map((c) => [c.token, c.rows.map((r) => r.id)])).toEqual([
      [token, ['a', 'b', 'bad', 'c']],
      [`${token}/0`, ['a', 'b']],
      [`${token}/1`, ['bad', 'c']],
      [`${token}/1/0`, ['bad']],
      [`${token}/1/1`, ['c']],
    ]);
    expect(h.sink.storedIds()).toEqual(['a', 'b', 'c']);
    expect(h.parked).toHaveLength(1);
    expect(h.parked[0]).toMatchObject({ stream: 'EVENTS', streamSeq: 1, index: 2 });
    expect(h.parked[0]!.reason).toMatch(/^store rejected the event: /);
    expect(JSON.parse(h.parked[0]!.event)).toMatchObject({ id: 'bad' });
    expect(at(h.effects, `clear:${token}`)).toBeLessThan(at(h.effects, 'park:1:2'));
    expect(at(h.effects, 'park:1:2')).toBeLessThan(at(h.effects, 'ack:1'));
  });

  it('does not insert a duplicate twice: within a batch, from memory, and from the store after a restart', async () => {
    const h = harness();
    await h.start();
    h.deliver(1, [event('a'), event('a'), event('b')]);
    await until(() => h.effects.includes('ack:1'), 'the first ack');
    // Past the take-over check (`handoverVerifyMs`): from here on only the memory index decides.
    h.clock += 61_000;
    const lookups = h.lookups.lookups;
    h.deliver(2, [event('a'), event('c')]);
    await until(() => h.effects.includes('ack:2'), 'the second ack');
    h.deliver(3, [event('b')]);
    await until(() => h.effects.includes('ack:3'), 'the third ack');
    expect(h.sink.calls.map((c) => c.rows.map((r) => r.id))).toEqual([['a', 'b'], ['c']]);
    expect(h.lookups.lookups).toBe(lookups);
    await h.processor.stop();

    // A new process: its index is loaded from the store, and fresh keys are checked there too.
    const next = harness(h);
    next.clock = h.clock;
    await next.start();
    next.deliver(4, [event('a'), event('d')]);
    await until(() => h.effects.includes('ack:4'), 'the ack after the restart');
    expect(h.sink.calls.map((c) => c.rows.map((r) => r.id))).toEqual([['a', 'b'], ['c'], ['d']]);
    expect(next.lookups.lookups).toBeGreaterThan(0);
  });

  it('inserts nothing while a repair holds the maintenance lease, and writes once it is released', async () => {
    const h = harness();
    await h.start();
    h.maintenanceHolder = 'repair-1';
    const startedAt = h.clock;
    h.deliver(1, [event('a')]);
    await until(() => h.maintenanceChecks >= 5, 'the writer waiting on the lease');
    expect(h.clock).toBeGreaterThan(startedAt);
    expect(h.effects.some((e) => e.startsWith('record') || e.startsWith('insert') || e.startsWith('ack'))).toBe(false);
    expect(h.working).toBeGreaterThan(0);
    h.maintenanceHolder = undefined;
    h.effects.push('lease released');
    await until(() => h.effects.includes('ack:1'), 'the ack');
    expect(at(h.effects, 'lease released')).toBeLessThan(at(h.effects, 'record:EVENTS:1-1:1'));
    expect(at(h.effects, 'record:EVENTS:1-1:1')).toBeLessThan(at(h.effects, 'insert:EVENTS:1-1:1'));
  });
});

describe('Processor: taking a partition', () => {
  /** A ledger entry left by a crashed owner: message 7's two events, ingested an hour before. */
  function crashed(h: ReturnType<typeof harness>): LedgerEntry {
    const entry = ledgerEntry('EVENTS:7-7:2', [0], h.clock - 3_600_000, [METER], [
      { seq: 7, index: 0 },
      { seq: 7, index: 1 },
    ]);
    h.stream.set(7, { data: encode([event('x', 5), event('y', 6)]), receivedAtMs: h.clock - 3_600_000 });
    void h.ledger.record(entry);
    h.effects.length = 0;
    return entry;
  }

  it('repeats the ledger entries naming it before consuming, and drops the redelivered events as duplicates', async () => {
    const h = harness();
    const entry = crashed(h);
    await h.start();
    expect(h.effects).toEqual([`insert:${entry.token}`, `done:${entry.token}`, 'consume:0']);
    expect(h.sink.calls[0]!.rows.map((r) => [r.id, r.ingested_at, r.meter_values[0]!.value])).toEqual([
      ['x', entry.ingestedAtMs, '5'],
      ['y', entry.ingestedAtMs, '6'],
    ]);
    expect(h.ledger.entries.size).toBe(0);

    h.deliver(7, [event('x', 5), event('y', 6)], 2);
    await until(() => h.effects.includes('ack:7'), 'the redelivery acked');
    expect(h.sink.calls).toHaveLength(1);
  });

  it('completes a repeat that the store skipped although a table lacks its rows', async () => {
    const h = harness();
    const entry = crashed(h);
    h.sink.tokens.add(entry.token); // the block was recorded, its rows never committed
    await h.start();
    expect(h.effects).toEqual([`insert:${entry.token}`, `insertKeys:${entry.token}:event_keys`, `insertValues:${entry.token}:meter_values`, `done:${entry.token}`, 'consume:0']);
    expect(h.sink.storedIds()).toEqual(['x', 'y']);
    expect(h.sink.values.size).toBe(2);
  });
});
