import type { Store } from '../common/clickhouse.ts';
import { errorMessage } from '../common/errors.ts';
import type { Logger } from '../common/logger.ts';
import type { Metrics } from '../common/metrics.ts';
import { PARTITION_SQL } from '../common/partition.ts';
import { TimeSlice } from '../common/time-slice.ts';
import { eventKey } from '../ingest/index.ts';
import { DedupIndex, KEY_HASH_EXACT_SQL, STORED_KEY_PACKED_SQL } from './dedup.ts';

/** A page of a partition's window of keys (see `KeyLookups.keyPage`). */
export interface KeyPage {
  /** Keys read in the page: fewer than asked means it was the last. */
  count: number;
  /** The page's last key, hex, for the next page to read on from. */
  after: { s: string; i: string };
  /** Keys whose hashes ClickHouse computed exactly, packed (`STORED_KEY_PACKED_SQL`). */
  packed: Uint8Array;
  /** The other keys with their ingestion times (ms). */
  others: [string, number][];
}

/** The dedup look-ups in the store (`event_keys`, and `meter_values` to check a repeated insert). */
export interface KeyLookups {
  /**
   * Which of these events the table holds, ingested since `sinceMs`: their keys (`eventKey`), or
   * for `meter_values` `${meter id}\0${key}`.
   */
  storedKeys(events: readonly { source: string; id: string }[], sinceMs: number, table?: 'event_keys' | 'meter_values'): Promise<Set<string>>;
  /** A partition's newest keys ingested since `fromMs`, at most `limit`, oldest first: [key, ingested at ms]. */
  newestKeys(partition: number, partitions: number, fromMs: number, limit: number): Promise<[string, number][]>;
  /** Up to `page` keys of the partition ingested since `fromMs`, in primary-key order after `after`. */
  keyPage(partition: number, partitions: number, fromMs: number, page: number, after?: { s: string; i: string }): Promise<KeyPage>;
}

/** `KeyLookups` in ClickHouse. */
export class ClickHouseKeyLookups implements KeyLookups {
  constructor(private readonly store: Store) {}

  /** Query parameters travel in the URL (ClickHouse's `http_max_uri_size` is 1 MiB), so the ids go in parts of about 256 KB. */
  async storedKeys(events: readonly { source: string; id: string }[], sinceMs: number, table: 'event_keys' | 'meter_values' = 'event_keys'): Promise<Set<string>> {
    const { ch, db } = this.store;
    const meter = table === 'meter_values';
    const found = new Set<string>();
    for (let i = 0; i < events.length; ) {
      const part: { source: string; id: string }[] = [];
      let bytes = 0;
      while (i < events.length && (part.length === 0 || bytes < 256 * 1024)) {
        const e = events[i++]!;
        part.push(e);
        bytes += 3 * (e.id.length + e.source.length) + 8;
      }
      const rs = await ch.query({
        query: `SELECT source, id${meter ? ', meter_id' : ''} FROM ${db}.${table}
                WHERE ingested_at >= fromUnixTimestamp64Milli({since:Int64}) AND source IN {sources:Array(String)} AND id IN {ids:Array(String)}`,
        query_params: { since: sinceMs, sources: [...new Set(part.map((e) => e.source))], ids: part.map((e) => e.id) },
        format: 'JSONCompactEachRow',
      });
      for (const [source, id, meterId] of await rs.json<[string, string, string?]>()) found.add(meter ? `${meterId}\0${eventKey({ source, id })}` : eventKey({ source, id }));
    }
    return found;
  }

  async newestKeys(partition: number, partitions: number, fromMs: number, limit: number): Promise<[string, number][]> {
    const { ch, db } = this.store;
    const rs = await ch.query({
      query: `SELECT source, id, toUnixTimestamp64Milli(ingested_at) AS at FROM ${db}.event_keys
              WHERE ingested_at >= fromUnixTimestamp64Milli({from:Int64}) AND ${PARTITION_SQL} = {partition:UInt32}
              ORDER BY ingested_at DESC LIMIT {limit:UInt64}`,
      query_params: { from: fromMs, limit, partitions, partition },
      format: 'JSONCompactEachRow',
    });
    const rows = await rs.json<[string, string, string]>();
    return rows.reverse().map(([source, id, at]) => [eventKey({ source, id }), Number(at)]);
  }

  /** ClickHouse hashes the keys, so a key travels as 16 bytes (hex in JSON), not as its strings. */
  async keyPage(partition: number, partitions: number, fromMs: number, page: number, after?: { s: string; i: string }): Promise<KeyPage> {
    const { ch, db } = this.store;
    const rs = await ch.query({
      query: `SELECT count(), hex(max((source, id)).1), hex(max((source, id)).2),
                     arrayStringConcat(groupArrayIf(${STORED_KEY_PACKED_SQL}, ${KEY_HASH_EXACT_SQL})),
                     groupArrayIf((source, id, toUnixTimestamp64Milli(ingested_at)), NOT ${KEY_HASH_EXACT_SQL})
              FROM (SELECT source, id, ingested_at FROM ${db}.event_keys
                    WHERE ingested_at >= fromUnixTimestamp64Milli({from:Int64}) AND ${PARTITION_SQL} = {partition:UInt32}
                      ${after ? 'AND (source > unhex({s:String}) OR (source = unhex({s:String}) AND id > unhex({i:String})))' : ''}
                    ORDER BY source, id LIMIT {page:UInt64})`,
      query_params: { from: fromMs, page, partitions, partition, ...after },
      format: 'JSONCompactEachRow',
    });
    const [row] = await rs.json<[string, string, string, string, [string, string, string][]]>();
    const [count, lastSource, lastId, packed, others] = row ?? ['0', '', '', '', []];
    return { count: Number(count), after: { s: lastSource, i: lastId }, packed: Buffer.from(packed, 'hex'), others: others.map(([source, id, at]) => [eventKey({ source, id }), Number(at)]) };
  }
}

export interface DedupStoreOptions {
  windowMs: number;
  /** Keys kept in memory, shared by all partitions. */
  maxMemoryKeys: number;
  /** Bytes of Bloom filters shared by all partitions; 0: none. */
  filterBytes: number;
  partitions: number;
}

/**
 * The dedup indexes of the partitions owned (dedup.ts, pure) with the store behind them: an
 * index is loaded from `event_keys` when a partition is taken, and keys it cannot prove new
 * (or all fresh keys, for a while after a take-over) are looked up there.
 */
export class DedupStore {
  /** Each owned partition's index. */
  readonly indexes = new Map<number, DedupIndex>();
  /** Until when (ms) each partition's fresh keys are also looked up in the store (after a take-over or a write given up). */
  readonly verifyUntil = new Map<number, number>();

  constructor(
    readonly lookups: KeyLookups,
    private readonly opts: DedupStoreOptions,
    private readonly log: Logger,
    private readonly metrics: Metrics,
    private readonly now: () => number,
    private readonly stopping: () => boolean,
  ) {}

  index(partition: number): DedupIndex {
    let ix = this.indexes.get(partition);
    if (!ix) {
      ix = new DedupIndex(this.opts.windowMs, this.perPartitionKeys(), 0, { filterBytes: this.perPartitionFilterBytes() });
      this.indexes.set(partition, ix);
    }
    return ix;
  }

  /** The keys held in memory, over all partitions. */
  get size(): number {
    let n = 0;
    for (const ix of this.indexes.values()) n += ix.size;
    return n;
  }

  /** The memory budget of keys is shared by the partitions: a partition gets its slice. */
  private perPartitionKeys(): number {
    return Math.max(1_000, Math.floor(this.opts.maxMemoryKeys / this.opts.partitions));
  }

  /** So is the budget of Bloom filters (`DEDUP_FILTER_MEMORY`). */
  private perPartitionFilterBytes(): number {
    return Math.floor(this.opts.filterBytes / this.opts.partitions);
  }

  /** Until `untilMs`, fresh keys of the partition are looked up in the store too. */
  verifyUntilMs(partition: number, untilMs: number): void {
    this.verifyUntil.set(partition, untilMs);
  }

  /** As `verifyUntilMs`, never shortening a longer check already set. */
  extendVerify(partition: number, untilMs: number): void {
    this.verifyUntil.set(partition, Math.max(this.verifyUntil.get(partition) ?? 0, untilMs));
  }

  needsStoreCheck(partition: number, key: string, now: number): boolean {
    return now < (this.verifyUntil.get(partition) ?? 0) || this.index(partition).needsStoreLookup(key, now);
  }

  /** The partition was given up: its index and checks go. */
  drop(partition: number): void {
    this.indexes.delete(partition);
    this.verifyUntil.delete(partition);
    this.metrics.processorDedupKeys.set(this.size);
  }

  /** Records stored keys in their partitions' indexes, a thousand at a time (the thread is shared). */
  async add(byPartition: ReadonlyMap<number, string[]>, atMs: number): Promise<void> {
    const slice = new TimeSlice(4, 1);
    for (const [partition, keys] of byPartition) {
      for (let i = 0; i < keys.length; i += 1_000) {
        if (slice.due()) await slice.pause();
        this.index(partition).add(keys.slice(i, i + 1_000), atMs);
      }
    }
    this.metrics.processorDedupKeys.set(this.size);
  }

  /**
   * Loads a partition's dedup index from `event_keys`: the window's newest keys, up to the map's
   * budget, into the map and the filters. If those were all of the window's keys, both cover it
   * at once; otherwise every key of the window is loaded into the filters in the background
   * (`loadFilters`), and until that is done fresh keys are looked up in the store.
   */
  async load(partition: number): Promise<void> {
    const now = this.now();
    const from = now - this.opts.windowMs;
    const limit = this.perPartitionKeys();
    const entries = await this.lookups.newestKeys(partition, this.opts.partitions, from, limit);
    const full = entries.length < limit;
    const ix = new DedupIndex(this.opts.windowMs, limit, now, { filterBytes: this.perPartitionFilterBytes() });
    ix.load(entries, full ? 0 : (entries[0]?.[1] ?? now), now);
    this.indexes.set(partition, ix);
    this.metrics.processorDedupKeys.set(this.size);
    if (!full && ix.hasFilters) {
      void this.loadFilters(partition, ix, from, now).catch((err: unknown) => {
        if (this.indexes.get(partition) !== ix || this.stopping()) return;
        // Exactness does not depend on it: fresh keys of this partition keep going to the store.
        this.log.warn({ partition, err: errorMessage(err) }, 'could not load the dedup filters; fresh keys are looked up in the store');
      });
    }
  }

  /**
   * Fills a partition's filters with every key of the window in `event_keys`, a page at a time
   * in primary-key order (each page reads on from the last key of the previous one). Keys
   * inserted meanwhile by a previous owner are covered by `verifyUntil` (see the processor's
   * `acquired`), keys accepted here meanwhile are added as they are. Stops if the partition is given up.
   */
  private async loadFilters(partition: number, ix: DedupIndex, from: number, now: number): Promise<void> {
    // A page holds at most the map's budget of keys (the memory already granted to keys), or a million.
    const page = Math.min(1_000_000, this.perPartitionKeys());
    const t0 = performance.now();
    let keys = 0;
    let after: { s: string; i: string } | undefined;
    for (;;) {
      const p = await this.lookups.keyPage(partition, this.opts.partitions, from, page, after);
      if (this.indexes.get(partition) !== ix || this.stopping()) return;
      keys += ix.loadPacked(p.packed, now);
      for (const [key, at] of p.others) ix.loadKey(key, at, now);
      keys += p.others.length;
      if (p.count < page) break;
      after = p.after;
    }
    ix.filtersCompleteFrom(from);
    const seconds = (performance.now() - t0) / 1000;
    const stats = ix.filterStats(this.now());
    this.log.info(
      { partition, keys, seconds: Math.round(seconds * 10) / 10, secondsPerMillionKeys: keys > 0 ? Math.round((seconds / keys) * 1e7) / 10 : 0, filterMiB: Math.round((stats?.bytes ?? 0) / 2 ** 20), expectedFpr: stats?.expectedFpr },
      'dedup filters loaded: they cover the window',
    );
  }
}
