/**
 * Event partitions. The identity of an event is `(source, id)`; its partition is a hash of that
 * identity, so every copy of an event (a duplicate in a batch, a producer retry, a redelivery)
 * lands in the same partition and is seen by the one processor that owns it. That is what keeps
 * dedup exact when several processors share the stream.
 *
 * The hash is MurmurHash3 (x86, 32-bit, seed 0) of the UTF-8 bytes of `source`, a NUL byte and
 * `id`: ClickHouse computes the same value with `PARTITION_SQL`, so a processor taking over a
 * partition can load that partition's keys from `event_keys`.
 */

const UTF8 = new TextEncoder();

/** MurmurHash3 x86 32-bit of `bytes` with seed 0, as ClickHouse's `murmurHash3_32(String)`. */
export function murmur3(bytes: Uint8Array): number {
  const c1 = 0xcc9e2d51;
  const c2 = 0x1b873593;
  let h = 0;
  const n = bytes.length;
  const blocks = n & ~3;
  for (let i = 0; i < blocks; i += 4) {
    let k = bytes[i]! | (bytes[i + 1]! << 8) | (bytes[i + 2]! << 16) | (bytes[i + 3]! << 24);
    k = Math.imul(k, c1);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, c2);
    h ^= k;
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  let k = 0;
  switch (n & 3) {
    case 3:
      k ^= bytes[blocks + 2]! << 16;
    // falls through
    case 2:
      k ^= bytes[blocks + 1]! << 8;
    // falls through
    case 1:
      k ^= bytes[blocks]!;
      k = Math.imul(k, c1);
      k = (k << 15) | (k >>> 17);
      k = Math.imul(k, c2);
      h ^= k;
  }
  h ^= n;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** The partition (0 … partitions-1) of the event `(source, id)`. */
export function partitionOf(source: string, id: string, partitions: number): number {
  if (partitions <= 1) return 0;
  return murmur3(UTF8.encode(`${source}\u0000${id}`)) % partitions;
}

/** The same partition computed by ClickHouse over columns `source` and `id`; bind `{partitions:UInt32}`. */
export const PARTITION_SQL = `murmurHash3_32(concat(source, char(0), id)) % {partitions:UInt32}`;

/**
 * The partition of a parsed event that may be invalid: events without a string source and id
 * cannot be deduplicated anyway, so they go to partition 0, whose owner dead-letters them.
 */
export function partitionOfItem(item: unknown, partitions: number): number {
  if (item && typeof item === 'object' && !Array.isArray(item)) {
    const { source, id } = item as { source?: unknown; id?: unknown };
    if (typeof source === 'string' && typeof id === 'string') return partitionOf(source, id, partitions);
  }
  return 0;
}
