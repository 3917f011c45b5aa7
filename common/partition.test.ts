import { describe, expect, it } from 'vitest';
import { murmur3, partitionOf, partitionOfItem } from './partition.ts';

const bytes = (s: string) => new TextEncoder().encode(s);

describe('partitions', () => {
  it('murmur3 is MurmurHash3 x86 32-bit with seed 0 (the values ClickHouse murmurHash3_32 gives)', () => {
    // Values read from ClickHouse 26 (chDB): SELECT murmurHash3_32(s) for each string.
    expect(murmur3(bytes(''))).toBe(0);
    expect(murmur3(bytes('a'))).toBe(1009084850);
    expect(murmur3(bytes('ab'))).toBe(2613040991);
    expect(murmur3(bytes('abc'))).toBe(3017643002);
    expect(murmur3(bytes('abcd'))).toBe(1139631978);
    expect(murmur3(bytes('hello'))).toBe(613153351);
    expect(murmur3(bytes('héllo wörld ✓ 𝄞'))).toBe(193410130);
    expect(murmur3(bytes('src\u0000id-123'))).toBe(47106523);
  });

  it('every copy of an event lands in the same partition, and keys spread evenly', () => {
    const counts = new Array<number>(8).fill(0);
    for (let i = 0; i < 80_000; i++) {
      const p = partitionOf('api', `evt-${i}`, 8);
      expect(p).toBe(partitionOf('api', `evt-${i}`, 8));
      counts[p]!++;
    }
    for (const c of counts) expect(c).toBeGreaterThan(9_000);
    expect(partitionOf('a', 'b', 1)).toBe(0);
  });

  it('source and id are separated: ("ab", "c") and ("a", "bc") are different events', () => {
    const spread = new Set<number>();
    for (let i = 0; i < 50; i++) spread.add(partitionOf(`ab${i}`, 'c', 64) - partitionOf(`a`, `b${i}c`, 64));
    expect(spread.size).toBeGreaterThan(1);
  });

  it('events without a string source and id go to partition 0 (their owner dead-letters them)', () => {
    expect(partitionOfItem({ id: 7, source: 's' }, 8)).toBe(0);
    expect(partitionOfItem('text', 8)).toBe(0);
    expect(partitionOfItem(null, 8)).toBe(0);
    expect(partitionOfItem({ id: 'x', source: 's' }, 8)).toBe(partitionOf('s', 'x', 8));
  });
});
