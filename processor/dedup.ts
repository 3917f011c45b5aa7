import { BlockedBloom, hashKey, KEY_HASH_SQL } from './bloom.ts';

export { BlockedBloom, blockedBloomFpr, hashKey, hashKeyBytes, KEY_HASH_EXACT_SQL, KEY_HASH_SQL } from './bloom.ts';

/** Bytes of one stored key in `loadPacked`'s input: its two hashes (UInt32) and acceptance time (Int64 ms), little-endian. */
export const STORED_KEY_BYTES = 16;

/**
 * A row of `event_keys` packed for `loadPacked`, in ClickHouse (as hex: JSON carries it): the
 * key's two hashes as `hashKey` computes them and `ingested_at` in ms. Valid for the rows
 * `KEY_HASH_EXACT_SQL` selects; the others are loaded as keys (`loadKey`).
 */
export const STORED_KEY_PACKED_SQL = `concat(${[...KEY_HASH_SQL, 'toUnixTimestamp64Milli(ingested_at)'].map((x) => `hex(reinterpretAsFixedString(${x}))`).join(', ')})`;

/**
 * Slices per dedup window: each Bloom filter holds the keys of a quarter of the window, and five
 * are live (the window's four slices and the one filling), each with a fifth of the memory. A
 * fresh key is tested against every live filter, so their rates add up, while fewer slices
 * waste more memory on keys that have left the window. With ~10 bits per key of the window (in
 * steady state, k = 5), 1 slice gives ~11 % "maybe", 2 give ~9 %, 4 give ~9 %, 8 give ~12 %;
 * bench/run.ts's `dedupMemory` measures 9.5 % with 4.
 */
export const FILTER_BUCKETS = 4;

export interface DedupIndexOptions {
  /** Bytes of Bloom filters behind the exact keys (0: none; fresh keys then need the store once memory is short). */
  filterBytes?: number;
}

/** Filter statistics for logs, metrics and the bench. */
export interface DedupFilterStats {
  bytes: number;
  /** Keys added to the live filters (with repeats). */
  keys: number;
  /** The expected share of fresh keys the filters answer "maybe" for (each then costs a store look-up). */
  expectedFpr: number;
  /** True when the filters hold every key of the window (a "no" from them is final). */
  coversWindow: boolean;
}

/**
 * The processor's exact dedup index over `(source, id)`. Pure: `now` is a parameter.
 *
 * Two layers answer "was this key accepted within the window?":
 *
 * - An exact map of the keys accepted within the window, oldest first, up to `maxKeys` (about
 *   85 bytes per 35-character key; it serves the quick producer retries). It knows from which
 *   time on it is complete (`coveredFromMs`): every key accepted since then is in it.
 * - Behind it, a ring of blocked Bloom filters (`bloom.ts`), each holding the keys accepted in
 *   one slice of the window (the slice of their acceptance time); a filter is cleared when its
 *   whole slice has left the window. Their memory is fixed (`filterBytes`): more keys than they
 *   were sized for only raise their false-positive rate. They too know from when on they are
 *   complete (after the start-up load of the window's keys, or from the start).
 *
 * For a key not in the map (`has` false), `needsStoreLookup` decides: if the map covers the
 * whole window, the key is new; else, if the filters cover it and answer "absent", it is new;
 * otherwise (a "maybe", or the filters are incomplete) the processor asks ClickHouse's
 * `event_keys`. Exactness never depends on memory; memory only decides how often the store is
 * asked.
 */
export class DedupIndex {
  private readonly seen = new Map<string, number>();
  private coveredFromMs: number;
  private readonly ring: FilterRing | undefined;
  private readonly hashes = new Uint32Array(2);

  constructor(
    private readonly windowMs: number,
    private readonly maxKeys: number,
    coveredFromMs = 0,
    options: DedupIndexOptions = {},
  ) {
    this.coveredFromMs = coveredFromMs;
    const bytes = options.filterBytes ?? 0;
    if (bytes > 0) this.ring = new FilterRing(windowMs, bytes, FILTER_BUCKETS, coveredFromMs);
  }

  /** True if `key` was accepted within the window and the map still holds it: a duplicate. */
  has(key: string, nowMs: number): boolean {
    const at = this.seen.get(key);
    return at !== undefined && at > nowMs - this.windowMs;
  }

  /**
   * For a key `has` did not find: true if memory cannot prove it new, so the store must be
   * asked (the map does not cover the window, and the filters either answer "maybe" or do not
   * cover it either).
   */
  needsStoreLookup(key: string, nowMs: number): boolean {
    if (this.coveredFromMs <= nowMs - this.windowMs) return false;
    const ring = this.ring;
    if (!ring || !ring.covers(nowMs)) return true;
    hashKey(key, this.hashes);
    return ring.maybe(this.hashes[0]!, this.hashes[1]!, nowMs);
  }

  /** Records accepted keys (in acceptance order) and drops keys outside the window or over the cap. */
  add(keys: Iterable<string>, atMs: number): void {
    const ring = this.ring;
    const h = this.hashes;
    for (const k of keys) {
      this.seen.delete(k);
      this.seen.set(k, atMs);
      if (ring) {
        hashKey(k, h);
        ring.put(h[0]!, h[1]!, atMs, atMs);
      }
    }
    this.evict(atMs);
  }

  evict(nowMs: number): void {
    const cutoff = nowMs - this.windowMs;
    for (const [k, at] of this.seen) {
      const overCap = this.seen.size > this.maxKeys;
      if (at > cutoff && !overCap) break;
      this.seen.delete(k);
      if (at > cutoff) this.coveredFromMs = Math.max(this.coveredFromMs, at + 1);
    }
  }

  /**
   * Loads keys from the store at start-up, oldest first, into the map and the filters: both are
   * then complete from `coveredFromMs` (0 when the entries are every key of the window).
   */
  load(entries: Iterable<[string, number]>, coveredFromMs: number, nowMs: number): void {
    const h = this.hashes;
    for (const [k, at] of entries) {
      this.seen.set(k, at);
      if (this.ring) {
        hashKey(k, h);
        this.ring.put(h[0]!, h[1]!, at, nowMs);
      }
    }
    this.coveredFromMs = coveredFromMs;
    if (this.ring) this.ring.fromMs = coveredFromMs;
  }

  /** True if there are filters to load the window's keys into (`loadPacked`, `loadKey`). */
  get hasFilters(): boolean {
    return this.ring !== undefined;
  }

  /**
   * Adds stored keys to the filters only, packed as `STORED_KEY_PACKED_SQL` makes them (16 bytes
   * a key: its two hashes, then its acceptance time). A time after `nowMs` (another processor's
   * clock ahead of ours) goes into `nowMs`'s slice, and the filters stop covering the window if
   * that slice leaves it before the key does. Returns the keys added.
   */
  loadPacked(bytes: Uint8Array, nowMs: number): number {
    const ring = this.ring;
    const n = Math.floor(bytes.length / STORED_KEY_BYTES);
    if (!ring) return n;
    const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    for (let o = 0; o < n * STORED_KEY_BYTES; o += STORED_KEY_BYTES) {
      ring.put(v.getUint32(o, true), v.getUint32(o + 4, true), v.getUint32(o + 8, true) + v.getInt32(o + 12, true) * 4294967296, nowMs);
    }
    return n;
  }

  /** Adds one stored key to the filters only (for keys the store cannot hash like `hashKey`). */
  loadKey(key: string, atMs: number, nowMs: number): void {
    if (!this.ring) return;
    hashKey(key, this.hashes);
    this.ring.put(this.hashes[0]!, this.hashes[1]!, atMs, nowMs);
  }

  /** Declares the filters complete since `fromMs`: every key accepted since then was loaded or added. */
  filtersCompleteFrom(fromMs: number): void {
    if (this.ring) this.ring.fromMs = fromMs;
  }

  /** Keys held in the exact map. */
  get size(): number {
    return this.seen.size;
  }

  filterStats(nowMs: number): DedupFilterStats | undefined {
    return this.ring?.stats(nowMs);
  }
}

/**
 * A ring of `buckets + 1` equal Bloom filters; slice `s` (times `[s·span, (s+1)·span)`, with
 * `span = ⌈window / buckets⌉`) lives in filter `s mod (buckets + 1)`. A filter is live while
 * the last time of its slice is inside the window; it is cleared when the ring moves on to a
 * slice `buckets + 1` later, by which time its own slice has left the window.
 */
class FilterRing {
  private readonly spanMs: number;
  private readonly filters: BlockedBloom[];
  /** The slice each filter holds (-1: none yet). */
  private readonly slices: number[];
  private newest = -1;
  /** Every key accepted since then is in the filters. */
  fromMs: number;
  /** Keys put in an earlier slice than their own (times ahead of `nowMs` while loading): the latest such time, and the earliest slice used. */
  private clampedAtMs = -Infinity;
  private clampedSlice = Infinity;

  constructor(
    private readonly windowMs: number,
    bytes: number,
    buckets: number,
    fromMs: number,
  ) {
    this.spanMs = Math.ceil(windowMs / buckets);
    const n = buckets + 1;
    this.filters = Array.from({ length: n }, () => new BlockedBloom(bytes / n));
    this.slices = new Array<number>(n).fill(-1);
    this.fromMs = fromMs;
  }

  private live(slice: number, nowMs: number): boolean {
    return slice >= 0 && (slice + 1) * this.spanMs - 1 > nowMs - this.windowMs;
  }

  /**
   * Adds a key accepted at `atMs` to its slice's filter; the ring may move on up to the slice of
   * `limitMs` (the present: a time from the store may be ahead of it). A key older than the
   * ring's slices goes into the newest filter: kept longer, never shorter.
   */
  put(h1: number, h2: number, atMs: number, limitMs: number): void {
    let s = Math.floor(atMs / this.spanMs);
    const top = Math.floor(limitMs / this.spanMs);
    if (s > top) {
      this.clampedAtMs = Math.max(this.clampedAtMs, atMs);
      this.clampedSlice = Math.min(this.clampedSlice, top); // it lands in `top` or a later slice: earlier is the safe side
      s = top;
    }
    const n = this.filters.length;
    if (s > this.newest) {
      for (let t = Math.max(this.newest + 1, s - n + 1); t <= s; t++) {
        this.filters[t % n]!.clear();
        this.slices[t % n] = t;
      }
      this.newest = s;
    } else if (this.slices[s % n] !== s) {
      s = this.newest;
    }
    this.filters[s % n]!.add(h1, h2);
  }

  /** True if some live filter may hold the key. */
  maybe(h1: number, h2: number, nowMs: number): boolean {
    const base = this.filters[0]!.blockOf(h1);
    for (let i = 0; i < this.filters.length; i++) {
      const f = this.filters[i]!;
      if (f.count > 0 && this.live(this.slices[i]!, nowMs) && f.testAt(base, h1, h2)) return true;
    }
    return false;
  }

  /** True if every key accepted within the window at `nowMs` is in a live filter. */
  covers(nowMs: number): boolean {
    const cutoff = nowMs - this.windowMs;
    if (this.fromMs > cutoff) return false;
    // A key kept in an earlier slice than its own is lost when that slice leaves the window.
    return !(this.clampedAtMs > cutoff && !this.live(this.clampedSlice, nowMs));
  }

  stats(nowMs: number): DedupFilterStats {
    let keys = 0;
    let absent = 1;
    let bytes = 0;
    for (let i = 0; i < this.filters.length; i++) {
      const f = this.filters[i]!;
      bytes += f.bytes;
      if (!this.live(this.slices[i]!, nowMs)) continue;
      keys += f.count;
      absent *= 1 - f.expectedFpr();
    }
    return { bytes, keys, expectedFpr: 1 - absent, coversWindow: this.covers(nowMs) };
  }
}
