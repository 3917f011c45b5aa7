/**
 * A blocked Bloom filter over event keys, for the dedup index (`dedup.ts`). Pure, no I/O.
 *
 * Every key sets `BLOOM_K` bits inside one 64-byte block (512 bits, one cache line), so an add
 * or a test costs one cache miss whatever k is (Putze, Sanders, Singler, "Cache-, hash- and
 * space-efficient Bloom filters", 2007). The block comes from the high bits of the first hash;
 * the bits inside it by double hashing `h2 + i·d` (Kirsch and Mitzenmacher), `d` odd and
 * derived from the first hash. A filter never forgets a key it was given and never loses
 * one: it answers "absent" (certain) or "maybe" (false positive at a rate `blockedBloomFpr`
 * gives).
 *
 * The two 32-bit hashes of a key are MurmurHash3 x86_32 of the key's UTF-8 bytes behind two
 * 4-byte prefixes (`KEY_HASH_PREFIXES`): ClickHouse computes the same values with
 * `KEY_HASH_SQL`, so a processor taking a partition over fills its filters from `event_keys`
 * with hashes, not strings.
 */

/** Bits set per key (see `blockedBloomFpr`: within ~10 % of the best k from 5 to 12 bits per key). */
export const BLOOM_K = 5;
/** 32-bit words per block: 16 × 32 = 512 bits = 64 bytes, one cache line. */
const BLOCK_WORDS = 16;
export const BLOOM_BLOCK_BYTES = BLOCK_WORDS * 4;

export class BlockedBloom {
  readonly blocks: number;
  private readonly words: Int32Array;
  /** Keys added since the last clear (with repeats). */
  count = 0;

  constructor(bytes: number) {
    this.blocks = Math.max(1, Math.floor(bytes / BLOOM_BLOCK_BYTES));
    this.words = new Int32Array(this.blocks * BLOCK_WORDS);
  }

  /** The word offset of the block a key's first hash picks: the high bits, scaled (no modulo bias). */
  blockOf(h1: number): number {
    return Math.floor((h1 * this.blocks) / 4294967296) * BLOCK_WORDS;
  }

  add(h1: number, h2: number): void {
    const w = this.words;
    const base = this.blockOf(h1);
    const d = Math.imul(h1, 0x9e3779b1) | 1;
    let g = h2 | 0;
    for (let i = 0; i < BLOOM_K; i++) {
      const bit = g >>> 23; // 0 … 511
      w[base + (bit >>> 5)]! |= 1 << (bit & 31);
      g = (g + d) | 0;
    }
    this.count++;
  }

  /** False: certainly never added. True: added, or a false positive. */
  test(h1: number, h2: number): boolean {
    return this.testAt(this.blockOf(h1), h1, h2);
  }

  /** `test` with the block offset already computed (filters of one size share it). */
  testAt(base: number, h1: number, h2: number): boolean {
    const w = this.words;
    const d = Math.imul(h1, 0x9e3779b1) | 1;
    let g = h2 | 0;
    for (let i = 0; i < BLOOM_K; i++) {
      const bit = g >>> 23;
      if ((w[base + (bit >>> 5)]! & (1 << (bit & 31))) === 0) return false;
      g = (g + d) | 0;
    }
    return true;
  }

  clear(): void {
    if (this.count > 0) this.words.fill(0);
    this.count = 0;
  }

  get bytes(): number {
    return this.words.byteLength;
  }

  /** The false-positive rate expected with `count` keys in this filter. */
  expectedFpr(): number {
    return blockedBloomFpr(this.count, this.blocks);
  }
}

/**
 * The false-positive rate of a blocked Bloom filter of `blocks` 512-bit blocks holding `keys`
 * keys, k bits each: the keys of a block are Poisson distributed (mean keys/blocks), and a
 * block holding i keys answers "maybe" with (1 − (1 − 1/512)^(k·i))^k.
 */
export function blockedBloomFpr(keys: number, blocks: number, k = BLOOM_K): number {
  if (keys <= 0) return 0;
  const bits = BLOCK_WORDS * 32;
  const lambda = keys / blocks;
  // Sum the Poisson terms around the mean (log space: lambda can be large).
  const lo = Math.max(0, Math.floor(lambda - 12 * Math.sqrt(lambda) - 12));
  const hi = Math.ceil(lambda + 12 * Math.sqrt(lambda) + 12);
  let fpr = 0;
  let logFact = 0;
  for (let i = 1; i <= lo; i++) logFact += Math.log(i);
  for (let i = lo; i <= hi; i++) {
    if (i > lo) logFact += Math.log(i);
    const p = Math.exp(i * Math.log(lambda) - lambda - logFact);
    fpr += p * (1 - (1 - 1 / bits) ** (k * i)) ** k;
  }
  return Math.min(1, fpr);
}

// ---- the hashes of a key -----------------------------------------------------------------

/** The 4 bytes hashed ahead of a key for its first and second hash (ASCII). */
export const KEY_HASH_PREFIXES = ['ml1:', 'ml2:'] as const;

/**
 * The two hashes in ClickHouse over columns `source` and `id`, for the key `eventKey` makes
 * (`<source length>:<source>\0<id>`). Equal to `hashKey`'s whenever the source is ASCII (its
 * length in UTF-16 units is then its length in bytes); `KEY_HASH_EXACT_SQL` says when.
 */
export const KEY_HASH_SQL = KEY_HASH_PREFIXES.map((p) => `murmurHash3_32(concat('${p}', toString(length(source)), ':', source, char(0), id))`) as [string, string];
/** True for the rows whose `KEY_HASH_SQL` equals `hashKey` of their key (both ASCII: no encoding can differ). */
export const KEY_HASH_EXACT_SQL = `(isValidASCII(source) AND isValidASCII(id))`;

const C1 = 0xcc9e2d51;
const C2 = 0x1b873593;

function mixK(k: number): number {
  k = Math.imul(k, C1);
  k = (k << 15) | (k >>> 17);
  return Math.imul(k, C2);
}

function mixH(h: number, k: number): number {
  h ^= k;
  h = (h << 13) | (h >>> 19);
  return (Math.imul(h, 5) + 0xe6546b64) | 0;
}

function fmix(h: number, n: number): number {
  h ^= n;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

const prefixWord = (p: string) => p.charCodeAt(0) | (p.charCodeAt(1) << 8) | (p.charCodeAt(2) << 16) | (p.charCodeAt(3) << 24);
/** The MurmurHash3 states after each 4-byte prefix (seed 0): the seeds of the key's two hashes. */
const SEED1 = mixH(0, mixK(prefixWord(KEY_HASH_PREFIXES[0])));
const SEED2 = mixH(0, mixK(prefixWord(KEY_HASH_PREFIXES[1])));

const UTF8 = new TextEncoder();
let scratch = new Uint8Array(256);

/**
 * Writes the two hashes of `key` into `out[0]` and `out[1]`: MurmurHash3 x86_32 (seed 0) of
 * `KEY_HASH_PREFIXES[i]` followed by the key's UTF-8 bytes, as ClickHouse's `murmurHash3_32`.
 * An ASCII key is hashed straight from its characters; any other is encoded first.
 */
export function hashKey(key: string, out: Uint32Array): void {
  const n = key.length;
  const blocks = n & ~3;
  let h1 = SEED1;
  let h2 = SEED2;
  let i = 0;
  for (; i < blocks; i += 4) {
    const a = key.charCodeAt(i);
    const b = key.charCodeAt(i + 1);
    const c = key.charCodeAt(i + 2);
    const d = key.charCodeAt(i + 3);
    if ((a | b | c | d) > 0x7f) return hashUtf8(key, out);
    const k = mixK(a | (b << 8) | (c << 16) | (d << 24));
    h1 = mixH(h1, k);
    h2 = mixH(h2, k);
  }
  let k = 0;
  switch (n & 3) {
    case 3: {
      const c = key.charCodeAt(i + 2);
      if (c > 0x7f) return hashUtf8(key, out);
      k ^= c << 16;
    }
    // falls through
    case 2: {
      const c = key.charCodeAt(i + 1);
      if (c > 0x7f) return hashUtf8(key, out);
      k ^= c << 8;
    }
    // falls through
    case 1: {
      const c = key.charCodeAt(i);
      if (c > 0x7f) return hashUtf8(key, out);
      k = mixK(k ^ c);
      h1 ^= k;
      h2 ^= k;
    }
  }
  out[0] = fmix(h1, n + 4);
  out[1] = fmix(h2, n + 4);
}

function hashUtf8(key: string, out: Uint32Array): void {
  if (scratch.length < key.length * 3) scratch = new Uint8Array(key.length * 3);
  hashKeyBytes(scratch, UTF8.encodeInto(key, scratch).written, out);
}

/** `hashKey` of the key whose UTF-8 bytes are `bytes[0 … n)`. */
export function hashKeyBytes(bytes: Uint8Array, n: number, out: Uint32Array): void {
  const blocks = n & ~3;
  let h1 = SEED1;
  let h2 = SEED2;
  let i = 0;
  for (; i < blocks; i += 4) {
    const k = mixK(bytes[i]! | (bytes[i + 1]! << 8) | (bytes[i + 2]! << 16) | (bytes[i + 3]! << 24));
    h1 = mixH(h1, k);
    h2 = mixH(h2, k);
  }
  let k = 0;
  switch (n & 3) {
    case 3:
      k ^= bytes[i + 2]! << 16;
    // falls through
    case 2:
      k ^= bytes[i + 1]! << 8;
    // falls through
    case 1:
      k = mixK(k ^ bytes[i]!);
      h1 ^= k;
      h2 ^= k;
  }
  out[0] = fmix(h1, n + 4);
  out[1] = fmix(h2, n + 4);
}
