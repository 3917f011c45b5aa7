import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { blockedBloomFpr, DedupIndex, FILTER_BUCKETS, hashKey, STORED_KEY_BYTES } from './dedup.ts';

const W = 1_000; // dedup window, ms
const T = 1_700_000_000_000; // a realistic "now": far more than one window after the epoch
const FRESH = 'never-added'; // a key no test adds: without filters, its answer is the map's coverage alone

describe('DedupIndex', () => {
  it('holds nothing when new, and knows every key since coveredFromMs', () => {
    const idx = new DedupIndex(W, 10);
    expect(idx.size).toBe(0);
    expect(idx.has('a', T)).toBe(false);
    expect(idx.needsStoreLookup(FRESH, T)).toBe(false);
  });

  it.each<[number, boolean]>([
    [T, true],
    [T + 1, true],
    [T + W - 1, true],
    [T + W, false],
    [T + 10 * W, false],
  ])('a key added at T is held at %d: %s', (nowMs, held) => {
    const idx = new DedupIndex(W, 10);
    idx.add(['a'], T);
    expect(idx.has('a', nowMs)).toBe(held);
    expect(idx.has('b', nowMs)).toBe(false);
  });

  it('refreshes the time of a key added again', () => {
    const idx = new DedupIndex(W, 10);
    idx.add(['a', 'b'], T);
    idx.add(['a'], T + W - 1);
    expect(idx.has('a', T + W)).toBe(true);
    expect(idx.has('b', T + W)).toBe(false);
    expect(idx.has('a', T + 2 * W - 2)).toBe(true);
    expect(idx.has('a', T + 2 * W - 1)).toBe(false);
  });

  it('drops keys that left the window when adding, without needing the store', () => {
    const idx = new DedupIndex(W, 10);
    idx.add(['a', 'b'], T);
    idx.add(['c'], T + W / 2);
    expect(idx.size).toBe(3);
    idx.add(['d'], T + W);
    expect(idx.size).toBe(2); // a and b left the window
    expect(idx.needsStoreLookup(FRESH, T + W)).toBe(false);
  });

  it('evict drops keys that left the window', () => {
    const idx = new DedupIndex(W, 10);
    idx.add(['a'], T);
    idx.add(['b'], T + 10);
    idx.evict(T + W);
    expect(idx.size).toBe(1);
    idx.evict(T + W + 10);
    expect(idx.size).toBe(0);
    expect(idx.needsStoreLookup(FRESH, T + W + 10)).toBe(false);
  });

  it('drops the oldest keys over the cap and then needs the store until they left the window', () => {
    const idx = new DedupIndex(W, 2);
    idx.add(['a'], T);
    idx.add(['b', 'c'], T + 100);
    expect(idx.size).toBe(2);
    expect([idx.has('a', T + 100), idx.has('b', T + 100), idx.has('c', T + 100)]).toEqual([false, true, true]);
    // a was accepted at T and is still inside the window: memory cannot prove a key new
    expect(idx.needsStoreLookup(FRESH, T + 100)).toBe(true);
    expect(idx.needsStoreLookup(FRESH, T + W - 1)).toBe(true);
    // once a's acceptance is more than a window ago, memory is complete again
    expect(idx.needsStoreLookup(FRESH, T + W + 1)).toBe(false);
  });

  it('drops keys over the cap within one add', () => {
    const idx = new DedupIndex(W, 2);
    idx.add(['a', 'b', 'c', 'd'], T);
    expect(idx.size).toBe(2);
    expect(['a', 'b', 'c', 'd'].map((k) => idx.has(k, T))).toEqual([false, false, true, true]);
    expect(idx.needsStoreLookup(FRESH, T)).toBe(true);
    expect(idx.needsStoreLookup(FRESH, T + W + 1)).toBe(false);
  });

  it('does not need the store when the keys over the cap had left the window anyway', () => {
    const idx = new DedupIndex(W, 2);
    idx.add(['a', 'b'], T);
    idx.add(['c', 'd'], T + W);
    expect(idx.size).toBe(2);
    expect(idx.needsStoreLookup(FRESH, T + W)).toBe(false);
  });

  it.each<[number, number, boolean]>([
    [T, T, true],
    [T, T + W - 1, true],
    [T, T + W, false],
    [T, T + 5 * W, false],
    [0, T, false],
  ])('started as covered from %d, at %d it needs the store: %s', (coveredFromMs, nowMs, needed) => {
    expect(new DedupIndex(W, 10, coveredFromMs).needsStoreLookup(FRESH, nowMs)).toBe(needed);
  });

  it('loads keys from the store, oldest first', () => {
    const idx = new DedupIndex(W, 10);
    idx.load(
      [
        ['a', T - W],
        ['b', T - W + 1],
        ['c', T - 1],
      ],
      0,
      T,
    );
    expect(idx.size).toBe(3);
    expect(['a', 'b', 'c', 'd'].map((k) => idx.has(k, T))).toEqual([false, true, true, false]);
    expect(idx.needsStoreLookup(FRESH, T)).toBe(false);
  });

  it('after a partial load needs the store until the missing part left the window', () => {
    const idx = new DedupIndex(W, 10);
    idx.load([['c', T - 100]], T - 100, T);
    expect(idx.needsStoreLookup(FRESH, T)).toBe(true);
    expect(idx.needsStoreLookup(FRESH, T - 100 + W - 1)).toBe(true);
    expect(idx.needsStoreLookup(FRESH, T - 100 + W)).toBe(false);
  });

  it('applies the cap to loaded keys at the next add', () => {
    const idx = new DedupIndex(W, 2);
    idx.load(
      [
        ['a', T - 30],
        ['b', T - 20],
        ['c', T - 10],
      ],
      0,
      T,
    );
    idx.add(['d'], T);
    expect(['a', 'b', 'c', 'd'].map((k) => idx.has(k, T))).toEqual([false, false, true, true]);
    expect(idx.needsStoreLookup(FRESH, T)).toBe(true);
    expect(idx.needsStoreLookup(FRESH, T - 20 + W + 1)).toBe(false);
  });
});

describe('DedupIndex properties', () => {
  const pool = ['k0', 'k1', 'k2', 'k3', 'k4', 'k5', 'k6', 'k7'];
  const steps = fc.array(
    fc.record({
      dtMs: fc.nat({ max: Math.round(1.5 * W) }),
      keys: fc.array(fc.constantFrom(...pool), { maxLength: 6 }),
      probesMs: fc.array(fc.nat({ max: 2 * W }), { maxLength: 3 }),
    }),
    { maxLength: 25 },
  );
  const inWindow = (at: number | undefined, nowMs: number) => at !== undefined && at > nowMs - W;

  it('with room for every key and full coverage, has() is true exactly for keys added within the window', () => {
    fc.assert(
      fc.property(steps, (ops) => {
        const idx = new DedupIndex(W, pool.length);
        const last = new Map<string, number>();
        let now = T;
        for (const op of ops) {
          now += op.dtMs;
          idx.add(op.keys, now);
          for (const k of op.keys) last.set(k, now);
          expect(idx.size).toBe(pool.filter((k) => inWindow(last.get(k), now)).length);
          for (const probe of [now, ...op.probesMs.map((p) => now + p)]) {
            for (const k of pool) expect(idx.has(k, probe)).toBe(inWindow(last.get(k), probe));
            expect(idx.needsStoreLookup(FRESH, probe)).toBe(false);
          }
        }
      }),
    );
  });

  it('under a cap, a key in the window is held or the store is asked; the need ends when the window passes', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 4 }), steps, (maxKeys, ops) => {
        const idx = new DedupIndex(W, maxKeys);
        const last = new Map<string, number>();
        let now = T;
        let lastEvictedAt: number | undefined; // acceptance time of the newest key dropped while inside the window
        for (const op of ops) {
          now += op.dtMs;
          idx.add(op.keys, now);
          for (const k of op.keys) last.set(k, now);
          expect(idx.size).toBeLessThanOrEqual(maxKeys);
          for (const k of pool) {
            const at = last.get(k);
            // a key in the window but not held was dropped by the cap (the window alone keeps it)
            if (inWindow(at, now) && !idx.has(k, now)) lastEvictedAt = Math.max(lastEvictedAt ?? 0, at!);
          }
          for (const probe of [now, ...op.probesMs.map((p) => now + p)]) {
            for (const k of pool) {
              // never a false "seen": a held key was added within the window
              if (idx.has(k, probe)) expect(inWindow(last.get(k), probe)).toBe(true);
              // exactness: a key accepted within the window is either held or looked up in the store
              if (inWindow(last.get(k), probe)) expect(idx.has(k, probe) || idx.needsStoreLookup(FRESH, probe)).toBe(true);
            }
            if (lastEvictedAt !== undefined && inWindow(lastEvictedAt, probe)) expect(idx.needsStoreLookup(FRESH, probe)).toBe(true);
            if (lastEvictedAt === undefined || probe > lastEvictedAt + W) expect(idx.needsStoreLookup(FRESH, probe)).toBe(false);
          }
        }
      }),
      { numRuns: 300 },
    );
  });

  it('once a key inside the window is dropped by the cap, the store is needed until that key left the window', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 5 }), fc.integer({ min: 1, max: 10 }), fc.nat({ max: W - 1 }), (maxKeys, extra, gapMs) => {
        const idx = new DedupIndex(W, maxKeys);
        idx.add(['first'], T);
        const rest = Array.from({ length: maxKeys - 1 + extra }, (_, i) => `k${i}`);
        idx.add(rest, T + gapMs); // pushes "first" out while it is inside the window
        expect(idx.has('first', T + gapMs)).toBe(false);
        for (let now = T + gapMs; now < T + W; now += 97) expect(idx.needsStoreLookup(FRESH, now)).toBe(true);
        expect(idx.needsStoreLookup(FRESH, T + W - 1)).toBe(true);
        const newestDropped = extra > 1 ? T + gapMs : T; // with more than one key over the cap, some of `rest` went too
        expect(idx.needsStoreLookup(FRESH, newestDropped + W + 1)).toBe(false);
      }),
    );
  });
});

/** Stored keys as `STORED_KEY_PACKED_SQL` packs them: two hashes and the acceptance time, little-endian. */
function packed(keys: [string, number][]): Uint8Array {
  const bytes = new Uint8Array(keys.length * STORED_KEY_BYTES);
  const v = new DataView(bytes.buffer);
  const h = new Uint32Array(2);
  keys.forEach(([k, at], i) => {
    hashKey(k, h);
    v.setUint32(i * STORED_KEY_BYTES, h[0]!, true);
    v.setUint32(i * STORED_KEY_BYTES + 4, h[1]!, true);
    v.setBigInt64(i * STORED_KEY_BYTES + 8, BigInt(at), true);
  });
  return bytes;
}

describe('DedupIndex with filters', () => {
  const SPAN = W / FILTER_BUCKETS; // each filter holds the keys of one slice: [T, T + SPAN), …
  const BIG = 64 * 1024; // bytes of filters: a few keys never make a false positive
  const fresh = (n: number) => Array.from({ length: n }, (_, i) => `fresh-${i}`);

  /** An index whose map holds one key: every add drops the previous key inside the window, so the map never covers it. */
  function busyIndex(filterBytes = BIG, coveredFromMs = 0) {
    const idx = new DedupIndex(W, 1, coveredFromMs, { filterBytes });
    let n = 0;
    return { idx, tick: (atMs: number) => idx.add([`filler-${n++}`], atMs) };
  }

  it('a key the map dropped is still in the filters: the store is asked for it, not for fresh keys', () => {
    const idx = new DedupIndex(W, 2, 0, { filterBytes: BIG });
    idx.add(['a'], T);
    idx.add(['b', 'c', 'd'], T + 10);
    expect(idx.has('a', T + 10)).toBe(false);
    expect(idx.needsStoreLookup('a', T + 10)).toBe(true);
    expect(fresh(1_000).filter((k) => idx.needsStoreLookup(k, T + 10))).toEqual([]);
    // without filters, every fresh key would go to the store
    const bare = new DedupIndex(W, 2);
    bare.add(['a'], T);
    bare.add(['b', 'c', 'd'], T + 10);
    expect(fresh(1_000).every((k) => bare.needsStoreLookup(k, T + 10))).toBe(true);
  });

  it('a key stays in the filters while it is in the window, and leaves with its slice', () => {
    const { idx, tick } = busyIndex();
    idx.add(['a'], T);
    for (let now = T + 50; now <= T + 3 * W; now += 50) {
      tick(now);
      expect(idx.has('a', now)).toBe(false);
      const inWindow = now < T + W;
      const sliceLive = now < T + SPAN - 1 + W; // its slice's last time, T + SPAN - 1, is still inside the window
      if (inWindow) expect(idx.needsStoreLookup('a', now)).toBe(true);
      expect(idx.needsStoreLookup('a', now)).toBe(sliceLive);
      expect(idx.needsStoreLookup(FRESH, now)).toBe(false);
    }
  });

  it.each([0, 1, SPAN - 2, SPAN - 1])('a key accepted %d ms into its slice is found up to the last ms of its window', (offsetMs) => {
    const { idx, tick } = busyIndex();
    const at = T + offsetMs;
    idx.add(['a'], at);
    tick(at + W - 2);
    expect(idx.needsStoreLookup('a', at + W - 1)).toBe(true);
    tick(T + SPAN - 1 + W);
    expect(idx.needsStoreLookup('a', T + SPAN - 1 + W - 1)).toBe(true);
    expect(idx.needsStoreLookup('a', T + SPAN - 1 + W)).toBe(false); // the whole slice has left the window
  });

  it('a key added again moves to the slice of its new time', () => {
    const { idx, tick } = busyIndex();
    idx.add(['a'], T);
    tick(T + 1);
    idx.add(['a'], T + 2 * SPAN);
    tick(T + 2 * SPAN + 1);
    for (let now = T + 2 * SPAN + 50; now < T + 2 * SPAN + W; now += 50) {
      tick(now);
      expect(idx.needsStoreLookup('a', now)).toBe(true);
    }
  });

  it('filters too small for their keys answer "maybe" for every key: every fresh key goes to the store', () => {
    const { idx } = busyIndex(64); // one 512-bit block per slice
    for (let i = 0; i < 2_000; i++) idx.add([`k${i}`], T + i / 10);
    expect(idx.size).toBe(1);
    expect(fresh(1_000).every((k) => idx.needsStoreLookup(k, T + 200))).toBe(true);
    for (let i = 0; i < 1_999; i++) expect(idx.has(`k${i}`, T + 200) || idx.needsStoreLookup(`k${i}`, T + 200)).toBe(true);
    expect(idx.filterStats(T + 200)!.expectedFpr).toBeCloseTo(1, 6);
  });

  it('an index created with no knowledge of the past asks the store until the filters are loaded', () => {
    const now = T;
    const idx = new DedupIndex(W, 2, now, { filterBytes: BIG });
    expect(idx.needsStoreLookup(FRESH, now)).toBe(true);
    // the window's keys, as the store hashes them (KEY_HASH_SQL), with their acceptance times
    const stored = Array.from({ length: 100 }, (_, i) => `stored-${i}`);
    const at = stored.map((_, i) => now - W + 1 + i * 9);
    expect(idx.loadPacked(packed(stored.map((k, i) => [k, at[i]!])), now)).toBe(100);
    idx.loadKey('5:héllo\u0000wörld', now - 5, now); // a key the store could not hash the same way
    expect(idx.needsStoreLookup(FRESH, now)).toBe(true); // not declared complete yet
    idx.filtersCompleteFrom(now - W);
    expect(idx.filterStats(now)).toMatchObject({ keys: 101, coversWindow: true });
    expect(fresh(1_000).filter((k) => idx.needsStoreLookup(k, now))).toEqual([]);
    for (const k of [...stored, '5:héllo\u0000wörld']) expect(idx.needsStoreLookup(k, now)).toBe(true);
    // the newest keys loaded into the map too
    idx.load([['stored-99', at[99]!]], at[99]!, now);
    expect(idx.has('stored-99', now)).toBe(true);
  });

  it('a partial load of the map leaves the filters incomplete until they are loaded', () => {
    const idx = new DedupIndex(W, 2, T, { filterBytes: BIG });
    idx.load(
      [
        ['b', T - 20],
        ['c', T - 10],
      ],
      T - 20,
      T,
    );
    expect(idx.needsStoreLookup(FRESH, T)).toBe(true);
    idx.filtersCompleteFrom(T - W);
    expect(idx.needsStoreLookup(FRESH, T)).toBe(false);
    expect(idx.needsStoreLookup('b', T)).toBe(true); // loaded keys are in the filters as well
  });

  it('a full load of the map covers the window with the filters too', () => {
    const idx = new DedupIndex(W, 2, T, { filterBytes: BIG });
    idx.load([['c', T - 10]], 0, T);
    expect(idx.needsStoreLookup(FRESH, T)).toBe(false);
    idx.add(['d', 'e', 'f'], T + 1); // the map drops c: the filters still know it
    expect(idx.needsStoreLookup('c', T + 1)).toBe(true);
    expect(idx.needsStoreLookup(FRESH, T + 1)).toBe(false);
  });

  it('a stored key stamped ahead of our clock: the filters stop covering when its slice leaves before it does', () => {
    const now = T + 200; // in the slice [T, T + SPAN)
    const { idx, tick } = busyIndex(BIG, now);
    idx.loadPacked(packed([['x', T + 400]]), now); // another processor's clock, 200 ms ahead: the next slice
    idx.filtersCompleteFrom(now - W);
    for (let t = now; t <= T + 2 * W; t += 50) {
      tick(t);
      const xInWindow = t < T + 400 + W;
      const xSliceLive = t < T + SPAN - 1 + W; // x is kept in our current slice
      if (xInWindow) expect(idx.needsStoreLookup('x', t)).toBe(true);
      expect(idx.filterStats(t)!.coversWindow).toBe(!xInWindow || xSliceLive);
      expect(idx.needsStoreLookup(FRESH, t)).toBe(xInWindow && !xSliceLive);
    }
  });

  it('a clock going back puts keys in the newest slice (kept longer, never shorter)', () => {
    const { idx, tick } = busyIndex();
    tick(T + 3 * W);
    idx.add(['a'], T + W); // the clock went back two windows
    for (let now = T + W; now < T + 4 * W; now += 50) {
      tick(Math.max(now, T + 3 * W));
      if (now < T + 2 * W) expect(idx.needsStoreLookup('a', now)).toBe(true);
    }
  });

  it('reports the expected false-positive rate of its live filters', () => {
    const idx = new DedupIndex(W, 10, 0, { filterBytes: 5 * 64 * 10 }); // ten blocks per slice
    expect(idx.filterStats(T)).toEqual({ bytes: 5 * 640, keys: 0, expectedFpr: 0, coversWindow: true });
    idx.add(Array.from({ length: 100 }, (_, i) => `k${i}`), T);
    const s = idx.filterStats(T)!;
    expect(s.keys).toBe(100);
    expect(s.expectedFpr).toBeCloseTo(blockedBloomFpr(100, 10), 9);
    expect(idx.filterStats(T + W + SPAN)!.keys).toBe(0); // that slice has left the window
    expect(new DedupIndex(W, 10).filterStats(T)).toBeUndefined();
  });
});

describe('DedupIndex with filters, properties', () => {
  const pool = ['k0', 'k1', 'k2', 'k3', 'k4', 'k5', 'k6', 'k7'];
  const steps = fc.array(
    fc.record({
      dtMs: fc.nat({ max: Math.round(1.5 * W) }),
      keys: fc.array(fc.constantFrom(...pool), { maxLength: 6 }),
      probesMs: fc.array(fc.nat({ max: 2 * W }), { maxLength: 3 }),
    }),
    { maxLength: 25 },
  );
  const inWindow = (at: number | undefined, nowMs: number) => at !== undefined && at > nowMs - W;

  it('any map cap, any filter size: a key accepted within the window is held or looked up in the store', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 4 }), fc.constantFrom(64, 640, 64 * 1024), steps, (maxKeys, filterBytes, ops) => {
        const idx = new DedupIndex(W, maxKeys, 0, { filterBytes });
        const last = new Map<string, number>();
        let now = T;
        for (const op of ops) {
          now += op.dtMs;
          idx.add(op.keys, now);
          for (const k of op.keys) last.set(k, now);
          for (const probe of [now, ...op.probesMs.map((p) => now + p)]) {
            for (const k of pool) {
              if (idx.has(k, probe)) expect(inWindow(last.get(k), probe)).toBe(true);
              if (inWindow(last.get(k), probe)) expect(idx.has(k, probe) || idx.needsStoreLookup(k, probe)).toBe(true);
            }
            // filters big enough for their keys, complete from the start: a key never added is new
            if (filterBytes === 64 * 1024) expect(idx.needsStoreLookup(FRESH, probe)).toBe(false);
          }
        }
      }),
      { numRuns: 300 },
    );
  });
});
