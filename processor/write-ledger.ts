import { Kvm, type KV } from '@nats-io/kv';
import type { JetStreamClient, JetStreamManager } from '@nats-io/jetstream';
import { kvKeys } from '../common/nats.ts';
import type { Meter } from '../meter/index.ts';

/**
 * What it takes to rebuild one insert exactly: the same rows, the same deduplication token.
 *
 * The insert into `events_raw` fans out through materialized views to `event_keys`,
 * `meter_values` and the rollups, and ClickHouse commits each table's part on its own. A process
 * killed in the middle (SIGKILL of `meterline start`, the store dying) leaves some tables with
 * the batch and others without. The one exact repair is the identical insert again: with the
 * same token and `deduplicate_blocks_in_dependent_materialized_views`, every table skips the
 * block it has and writes the block it lacks. The rows are not kept anywhere else, so before
 * each insert the processor records here how to rebuild them from the stream: the messages
 * (stream sequences, which stay in the stream after an ack), which events of each message were
 * rows, the `ingested_at` of the rows and the meters that gave their values.
 */
export interface LedgerEntry {
  v: 1;
  token: string;
  /** The partitions whose messages the batch holds. */
  units: number[];
  ingestedAtMs: number;
  /** The meters whose values the rows carry (definitions as they were; meters are immutable by id). */
  meters: Meter[];
  /** In row order: a message's stream sequence and the item indexes that became rows, as inclusive ranges. */
  messages: [number, [number, number][]][];
}

/** Builds a ledger entry from the rows' (sequence, item index) pairs, in row order. */
export function ledgerEntry(token: string, units: Iterable<number>, ingestedAtMs: number, meters: Meter[], rows: Iterable<{ seq: number; index: number }>): LedgerEntry {
  const messages: LedgerEntry['messages'] = [];
  let current: [number, [number, number][]] | undefined;
  for (const { seq, index } of rows) {
    if (!current || current[0] !== seq) messages.push((current = [seq, []]));
    const ranges = current[1];
    const last = ranges[ranges.length - 1];
    if (last && last[1] === index - 1) last[1] = index;
    else ranges.push([index, index]);
  }
  return { v: 1, token, units: [...new Set(units)].sort((a, b) => a - b), ingestedAtMs, meters, messages };
}

/** The (sequence, index) pairs of an entry, in row order. */
export function* ledgerRows(entry: LedgerEntry): Generator<{ seq: number; index: number }> {
  for (const [seq, ranges] of entry.messages) for (const [from, to] of ranges) for (let i = from; i <= to; i++) yield { seq, index: i };
}

export interface PendingWrite {
  key: string;
  revision: number;
  entry: LedgerEntry;
}

const BUCKET = 'meterline_write_ledger';

/** Where an insert is recorded: its slot and the revision written. */
export interface LedgerSlot {
  key: string;
  revision: number;
}

/**
 * The write ledger in a NATS KV bucket. A processor records its insert in flight in a slot of its
 * own (`w.<holder>.<n>`) and clears it once the insert has landed in every table; writes are
 * serial in a processor, so one slot is in use at a time. A write given up without landing (its
 * partition lost, the process stopping), or left by a crash of an earlier process with the same
 * holder name, stays in its slot, and the slot stays taken until that entry is gone (the next
 * owner of the partition repeated and removed it): the next batch then takes another slot, so an
 * entry is never overwritten before it has been repeated. Whoever takes a partition next repeats
 * every entry naming it before consuming.
 */
export class WriteLedger {
  /** Slots holding an entry that has not landed: revision written. */
  private readonly taken = new Map<string, number>();

  private constructor(
    private readonly kv: KV,
    private readonly jsm: JetStreamManager,
    private readonly holder: string,
  ) {}

  static async open(js: JetStreamClient, holder: string, replicas = 1): Promise<WriteLedger> {
    const kv = await new Kvm(js).create(BUCKET, { history: 1, replicas });
    const ledger = new WriteLedger(kv, await js.jetstreamManager(), keyPart(holder));
    // A holder restarted under the same name (`meterline start` keeps its name) finds its slots as
    // it left them: an entry there has not been repeated yet, so its slot stays taken. Otherwise
    // the first batch after the restart could overwrite it before the partition it names is taken.
    for (const key of await ledger.keys(`w.${ledger.holder}.>`)) {
      const e = await kv.get(key);
      if (e && e.operation === 'PUT' && e.length > 0) ledger.taken.set(key, e.revision);
    }
    return ledger;
  }

  /** Records the insert about to run in a free slot. */
  async record(entry: LedgerEntry): Promise<LedgerSlot> {
    for (let n = 0; ; n++) {
      const key = `w.${this.holder}.${n}`;
      const revision = this.taken.get(key);
      if (revision !== undefined) {
        const e = await this.kv.get(key);
        if (e && e.operation === 'PUT' && e.revision === revision) continue; // still waiting to be repeated
        this.taken.delete(key);
      }
      return { key, revision: await this.kv.put(key, JSON.stringify(entry)) };
    }
  }

  /**
   * The insert has landed in every table. Retried a few times: an entry left behind after its
   * insert landed would be repeated by the partition's next owner, which is harmless only while
   * ClickHouse still remembers the blocks (its deduplication window). If NATS stays away, the
   * slot's next entry overwrites it.
   */
  async clear(slot: LedgerSlot): Promise<void> {
    for (let attempt = 0; attempt < 6; attempt++) {
      try {
        await this.kv.delete(slot.key, { previousSeq: slot.revision });
        return;
      } catch (err) {
        if (/wrong last sequence/i.test(String(err))) return; // already repeated and removed by someone else
        await new Promise((r) => setTimeout(r, 100 * 2 ** attempt));
      }
    }
  }

  /** The insert was given up unlanded: the entry stays for the partition's next owner, and its slot stays taken. */
  keep(slot: LedgerSlot): void {
    this.taken.set(slot.key, slot.revision);
  }

  /** The keys under `filter` holding a value or a delete marker (see `kvKeys`). */
  private keys(filter: string): Promise<string[]> {
    return kvKeys(this.jsm, BUCKET, filter);
  }

  /** Every recorded insert that holds messages of `unit` (any holder's, this one's too). */
  async pendingFor(unit: number): Promise<PendingWrite[]> {
    const out: PendingWrite[] = [];
    for (const key of await this.keys('w.>')) {
      const e = await this.kv.get(key);
      if (!e || e.operation !== 'PUT' || e.length === 0) continue;
      const entry = e.json<LedgerEntry>();
      if (entry.v === 1 && entry.units.includes(unit)) out.push({ key, revision: e.revision, entry });
    }
    return out;
  }

  /** A repeated entry has landed: removes exactly that revision (a newer entry in the slot stays). */
  async done(p: PendingWrite): Promise<void> {
    await this.kv.delete(p.key, { previousSeq: p.revision }).catch(() => undefined);
  }
}

/** A backfill insert into `meter_values` (whose views feed the rollups), recorded with its rows. */
export interface BackfillEntry {
  v: 1;
  meterId: string;
  token: string;
  rows: Record<string, unknown>[];
}

/**
 * Backfill inserts in the same bucket: a page's rows are recorded under `b.<meter id>` before
 * they are inserted and cleared after, so a page cut off half-way (in `meter_values` but not in
 * a rollup) is inserted again identically (and deduplicated table by table) before the meter's
 * backfill goes on; without that, the next pass would skip the page's events as counted.
 */
export class BackfillLedger {
  constructor(private readonly kv: KV) {}

  static async open(js: JetStreamClient, replicas = 1): Promise<BackfillLedger> {
    return new BackfillLedger(await new Kvm(js).create(BUCKET, { history: 1, replicas }));
  }

  async record(entry: BackfillEntry): Promise<number> {
    return this.kv.put(`b.${keyPart(entry.meterId)}`, JSON.stringify(entry));
  }

  async clear(meterId: string, revision: number): Promise<void> {
    await this.kv.delete(`b.${keyPart(meterId)}`, { previousSeq: revision }).catch(() => undefined);
  }

  async pending(meterId: string): Promise<{ revision: number; entry: BackfillEntry } | undefined> {
    const e = await this.kv.get(`b.${keyPart(meterId)}`);
    if (!e || e.operation !== 'PUT' || e.length === 0) return undefined;
    return { revision: e.revision, entry: e.json<BackfillEntry>() };
  }
}

/** A KV key part: letters, digits, `-`, `_`, `=` as they are; any other character as `_<hex code>_`. */
function keyPart(s: string): string {
  return s.replace(/[^A-Za-z0-9_=-]/g, (c) => `_${c.charCodeAt(0).toString(16)}_`);
}
