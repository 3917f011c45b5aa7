import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { murmur3 } from '../common/partition.ts';
import { BLOOM_K, BlockedBloom, blockedBloomFpr, hashKey, KEY_HASH_PREFIXES } from './bloom.ts';

const UTF8 = new TextEncoder();
const hashes = (key: string): [number, number] => {
  const out = new Uint32Array(2);
  hashKey(key, out);
  return [out[0]!, out[1]!];
};

describe('hashKey', () => {
  it.each([
    [''],
    ['a'],
    ['ab'],
    ['abc'],
    ['abcd'],
    ['12:gateway-prod\u0000evt_4294967295_7'],
    ['3:api\u0000id with spaces and \t tabs'],
    ['5:héllo\u0000wörld ✓ 𝄞'], // non-ASCII: hashed from its UTF-8 bytes
    ['1:x\u0000é'],
    ['3:abc\u0000\ud800'], // a lone surrogate: encoded as U+FFFD, as the store receives it
  ])('%j: MurmurHash3 x86_32 of each prefix followed by the UTF-8 bytes (what ClickHouse computes)', (key) => {
    expect(hashes(key)).toEqual(KEY_HASH_PREFIXES.map((p) => murmur3(UTF8.encode(p + key))));
  });

  it('agrees with murmur3 on any string', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 40 }), (key) => {
        expect(hashes(key)).toEqual(KEY_HASH_PREFIXES.map((p) => murmur3(UTF8.encode(p + key))));
      }),
    );
  });
});

describe('BlockedBloom', () => {
  it('answers "absent" for every key until one is added, and "maybe" for every key added', () => {
    const f = new BlockedBloom(64 * 100);
    expect(f.blocks).toBe(100);
    const keys = Array.from({ length: 300 }, (_, i) => hashes(`4:test\u0000k${i}`));
    for (const [a, b] of keys) expect(f.test(a, b)).toBe(false);
    for (const [a, b] of keys) f.add(a, b);
    for (const [a, b] of keys) expect(f.test(a, b)).toBe(true);
    expect(f.count).toBe(300);
    f.clear();
    expect(f.count).toBe(0);
    for (const [a, b] of keys) expect(f.test(a, b)).toBe(false);
  });

  it('has at least one block, and rounds its size down to whole 64-byte blocks', () => {
    expect(new BlockedBloom(0).blocks).toBe(1);
    expect(new BlockedBloom(1_000).bytes).toBe(960);
  });

  // The observed rate on a million deterministic keys against the theory (`blockedBloomFpr`).
  // Double hashing inside 512 bits lets two of the k bits coincide now and then, so the
  // observed rate runs a few percent above the formula; it never falls far below it.
  it.each([
    [8, 0.0231],
    [10, 0.0104],
  ])('with %d bits per key, a fresh key is a false positive at the expected rate (%f)', (bitsPerKey, expected) => {
    const n = 1_000_000;
    const f = new BlockedBloom((n * bitsPerKey) / 8);
    const out = new Uint32Array(2);
    for (let i = 0; i < n; i++) {
      hashKey(`12:gateway-prod\u0000evt_${(i * 2654435761) % 4294967296}_${i}`, out);
      f.add(out[0]!, out[1]!);
    }
    let falsePositives = 0;
    for (let i = 0; i < n; i++) {
      hashKey(`12:gateway-prod\u0000new_${(i * 2654435761) % 4294967296}_${i}`, out);
      if (f.test(out[0]!, out[1]!)) falsePositives++;
    }
    const theory = blockedBloomFpr(n, f.blocks);
    expect(theory).toBeCloseTo(expected, 3);
    expect(falsePositives / n).toBeGreaterThan(0.95 * theory);
    expect(falsePositives / n).toBeLessThan(1.15 * theory);
  });
});

describe('blockedBloomFpr', () => {
  it.each<[number, number, number]>([
    [0, 10, 0],
    [1, 1_000_000, 0],
    [1_000_000, 1_000, 1],
  ])('%d keys in %d blocks: %f', (keys, blocks, fpr) => {
    expect(blockedBloomFpr(keys, blocks)).toBeCloseTo(fpr, 3);
  });

  it('is above the classic Bloom filter of the same size (the price of one cache line per key)', () => {
    for (const bitsPerKey of [6, 8, 10, 12]) {
      const classic = (1 - Math.exp(-BLOOM_K / bitsPerKey)) ** BLOOM_K;
      const blocked = blockedBloomFpr(1_000_000, (1_000_000 * bitsPerKey) / 512);
      expect(blocked).toBeGreaterThan(classic);
      expect(blocked).toBeLessThan(1.6 * classic);
    }
  });
});
