/**
 * The processor's exact dedup index over `(source, id)`. Pure: `now` is a parameter.
 *
 * Memory holds the keys accepted within the dedup window, oldest first, up to `maxKeys`
 * (about 100 bytes plus the key's length per key; 2,000,000 keys ≈ 300 MiB). It also knows
 * from which time on it is complete (`coveredFromMs`): every key accepted since then is in
 * memory. While the whole window is covered, a key not in memory is new. Once memory had to
 * drop keys that were still inside the window (or after a restart, when the start-up load did
 * not fit), a key not in memory may still be a duplicate: `needsStoreLookup` says so, and the
 * processor asks ClickHouse's `event_keys` table for those keys. Exactness never depends on
 * memory; memory only decides how often the store is asked.
 */
export class DedupIndex {
  private readonly seen = new Map<string, number>();
  private coveredFromMs: number;

  constructor(
    private readonly windowMs: number,
    private readonly maxKeys: number,
    coveredFromMs = 0,
  ) {
    this.coveredFromMs = coveredFromMs;
  }

  /** True if `key` was accepted within the window and memory still holds it. */
  has(key: string, nowMs: number): boolean {
    const at = this.seen.get(key);
    return at !== undefined && at > nowMs - this.windowMs;
  }

  /** True if memory alone cannot prove a key is new (some in-window keys are not held). */
  needsStoreLookup(nowMs: number): boolean {
    return this.coveredFromMs > nowMs - this.windowMs;
  }

  /** Records accepted keys (in acceptance order) and drops keys outside the window or over the cap. */
  add(keys: Iterable<string>, atMs: number): void {
    for (const k of keys) {
      this.seen.delete(k);
      this.seen.set(k, atMs);
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

  /** Loads keys from the store at start-up, oldest first; `complete` if the load covers the window. */
  load(entries: Iterable<[string, number]>, coveredFromMs: number): void {
    for (const [k, at] of entries) this.seen.set(k, at);
    this.coveredFromMs = coveredFromMs;
  }

  get size(): number {
    return this.seen.size;
  }
}
