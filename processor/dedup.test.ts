import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DedupIndex } from './dedup.ts';

const W = 1_000; // dedup window, ms
const T = 1_700_000_000_000; // a realistic "now": far more than one window after the epoch

describe('DedupIndex', () => {
  it('holds nothing when new, and knows every key since coveredFromMs', () => {
    const idx = new DedupIndex(W, 10);
    expect(idx.size).toBe(0);
    expect(idx.has('a', T)).toBe(false);
    expect(idx.needsStoreLookup(T)).toBe(false);
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
    expect(idx.needsStoreLookup(T + W)).toBe(false);
  });

  it('evict drops keys that left the window', () => {
    const idx = new DedupIndex(W, 10);
    idx.add(['a'], T);
    idx.add(['b'], T + 10);
    idx.evict(T + W);
    expect(idx.size).toBe(1);
    idx.evict(T + W + 10);
    expect(idx.size).toBe(0);
    expect(idx.needsStoreLookup(T + W + 10)).toBe(false);
  });

  it('drops the oldest keys over the cap and then needs the store until they left the window', () => {
    const idx = new DedupIndex(W, 2);
    idx.add(['a'], T);
    idx.add(['b', 'c'], T + 100);
    expect(idx.size).toBe(2);
    expect([idx.has('a', T + 100), idx.has('b', T + 100), idx.has('c', T + 100)]).toEqual([false, true, true]);
    // a was accepted at T and is still inside the window: memory cannot prove a key new
    expect(idx.needsStoreLookup(T + 100)).toBe(true);
    expect(idx.needsStoreLookup(T + W - 1)).toBe(true);
    // once a's acceptance is more than a window ago, memory is complete again
    expect(idx.needsStoreLookup(T + W + 1)).toBe(false);
  });

  it('drops keys over the cap within one add', () => {
    const idx = new DedupIndex(W, 2);
    idx.add(['a', 'b', 'c', 'd'], T);
    expect(idx.size).toBe(2);
    expect(['a', 'b', 'c', 'd'].map((k) => idx.has(k, T))).toEqual([false, false, true, true]);
    expect(idx.needsStoreLookup(T)).toBe(true);
    expect(idx.needsStoreLookup(T + W + 1)).toBe(false);
  });

  it('does not need the store when the keys over the cap had left the window anyway', () => {
    const idx = new DedupIndex(W, 2);
    idx.add(['a', 'b'], T);
    idx.add(['c', 'd'], T + W);
    expect(idx.size).toBe(2);
    expect(idx.needsStoreLookup(T + W)).toBe(false);
  });

  it.each<[number, number, boolean]>([
    [T, T, true],
    [T, T + W - 1, true],
    [T, T + W, false],
    [T, T + 5 * W, false],
    [0, T, false],
  ])('started as covered from %d, at %d it needs the store: %s', (coveredFromMs, nowMs, needed) => {
    expect(new DedupIndex(W, 10, coveredFromMs).needsStoreLookup(nowMs)).toBe(needed);
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
    );
    expect(idx.size).toBe(3);
    expect(['a', 'b', 'c', 'd'].map((k) => idx.has(k, T))).toEqual([false, true, true, false]);
    expect(idx.needsStoreLookup(T)).toBe(false);
  });

  it('after a partial load needs the store until the missing part left the window', () => {
    const idx = new DedupIndex(W, 10);
    idx.load([['c', T - 100]], T - 100);
    expect(idx.needsStoreLookup(T)).toBe(true);
    expect(idx.needsStoreLookup(T - 100 + W - 1)).toBe(true);
    expect(idx.needsStoreLookup(T - 100 + W)).toBe(false);
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
    );
    idx.add(['d'], T);
    expect(['a', 'b', 'c', 'd'].map((k) => idx.has(k, T))).toEqual([false, false, true, true]);
    expect(idx.needsStoreLookup(T)).toBe(true);
    expect(idx.needsStoreLookup(T - 20 + W + 1)).toBe(false);
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
            expect(idx.needsStoreLookup(probe)).toBe(false);
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
              if (inWindow(last.get(k), probe)) expect(idx.has(k, probe) || idx.needsStoreLookup(probe)).toBe(true);
            }
            if (lastEvictedAt !== undefined && inWindow(lastEvictedAt, probe)) expect(idx.needsStoreLookup(probe)).toBe(true);
            if (lastEvictedAt === undefined || probe > lastEvictedAt + W) expect(idx.needsStoreLookup(probe)).toBe(false);
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
        for (let now = T + gapMs; now < T + W; now += 97) expect(idx.needsStoreLookup(now)).toBe(true);
        expect(idx.needsStoreLookup(T + W - 1)).toBe(true);
        const newestDropped = extra > 1 ? T + gapMs : T; // with more than one key over the cap, some of `rest` went too
        expect(idx.needsStoreLookup(newestDropped + W + 1)).toBe(false);
      }),
    );
  });
});
