import { performance } from 'node:perf_hooks';
import { DedupIndex, FILTER_BUCKETS, hashKey, hashKeyBytes, STORED_KEY_BYTES } from '../../processor/index.ts';
import type { Section } from '../harness.ts';
import { round } from '../lib.ts';

/**
 * The processor's dedup indexes (8 partitions) in the state they are in, in steady state, at
 * 10,000 events/s with a 24 h window: 864M keys in the window (`size.dedupKeys`; a quick or
 * scaled run fills fewer, with filters and map scaled alike, so the bits per key, and with them
 * the false-positive rate, stay those of the target), plus the keys of the half slice before
 * the window that the oldest live filter still holds. Configuration: DEDUP_FILTER_MEMORY=1GiB
 * and the default DEDUP_MAX_MEMORY_KEYS=2M, split over the partitions as the processor does.
 *
 * Keys go to partition `i mod 8`, at evenly spread acceptance times. The older keys enter the
 * filters only, as the start-up load puts them (`loadPacked`: two hashes and a time), hashed
 * from their UTF-8 bytes written in place (the same hashes as `hashKey` of the string: checked
 * on a sample), so the fill takes minutes, not the half hour that making 970M strings takes;
 * the newest keys, as many as the maps hold, go through `add()` as the processor adds them
 * (its per-key rate). Then: memory after a gc, the share of 1M never-seen keys that would need
 * a store look-up, and a check on a sample that no key of the window would pass as new.
 */
export const dedupMemory: Section = {
  name: 'dedupMemory',
  summary: "the processor's dedup indexes (8 partitions, 1GiB of filters, 2M exact keys) holding a 24 h window at 10,000 events/s: memory, store look-up share, rates",
  timeoutMs: 900_000,
  async run(b, signal) {
    const partitions = 8;
    const windowMs = 86_400_000;
    const keys = b.size.dedupKeys;
    const scaleOfTarget = keys / 864_000_000;
    const filterBytes = Math.floor(2 ** 30 * scaleOfTarget);
    const mapKeys = Math.max(partitions * 1_000, Math.floor(2_000_000 * scaleOfTarget));
    const perPartitionKeys = Math.floor(mapKeys / partitions);
    // Steady state, measured half-way into a slice: the window (nowMs - 24 h, nowMs] holds `keys`
    // keys, and the oldest live filter also the keys of the half slice before it (12.5 % more).
    const span = windowMs / FILTER_BUCKETS;
    const nowMs = Math.floor(Date.now() / span) * span - windowMs + span / 2;
    const fillStartMs = nowMs - windowMs - span / 2;
    const total = Math.round(keys * (1 + span / 2 / windowMs));
    const atOf = (i: number) => fillStartMs + Math.floor((i * (windowMs + span / 2)) / total);
    const keyOf = (i: number) => `12:gateway-prod\u0000evt_${(i * 2654435761) % 4294967296}_${i}`;

    // The UTF-8 bytes of keyOf(i), written in place (two digits at a time), and their hashes.
    const bytes = new Uint8Array(64);
    const head = new TextEncoder().encode('12:gateway-prod\u0000evt_');
    bytes.set(head);
    const pairs = new Uint8Array(200).map((_, i) => 48 + (i % 2 === 0 ? Math.floor(i / 20) : (i >> 1) % 10));
    const digits = (x: number, at: number) => {
      let len = 1;
      for (let p = 10; x >= p; p *= 10) len++;
      let q = at + len;
      for (; x >= 100; q -= 2) {
        const y = Math.floor(x / 100);
        const r = 2 * (x - 100 * y);
        bytes[q - 2] = pairs[r]!;
        bytes[q - 1] = pairs[r + 1]!;
        x = y;
      }
      if (x >= 10) {
        bytes[q - 2] = pairs[2 * x]!;
        bytes[q - 1] = pairs[2 * x + 1]!;
      } else bytes[q - 1] = 48 + x;
      return at + len;
    };
    const h = new Uint32Array(2);
    const hashOf = (i: number) => {
      let n = digits((i * 2654435761) % 4294967296, head.length);
      bytes[n++] = 95; // _
      n = digits(i, n);
      hashKeyBytes(bytes, n, h);
    };
    const check = new Uint32Array(2);
    for (const i of [0, 1, 9, 10, 99, 100, 101, 12_345, total - 1]) {
      hashOf(i);
      hashKey(keyOf(i), check);
      if (h[0] !== check[0] || h[1] !== check[1]) throw new Error(`in-place hash of key ${i} differs from hashKey`);
    }

    global.gc?.();
    const before = process.memoryUsage();
    const firstAdded = total - partitions * perPartitionKeys; // from here on, keys go through add()
    const indexes = Array.from({ length: partitions }, () => new DedupIndex(windowMs, perPartitionKeys, atOf(firstAdded), { filterBytes: Math.floor(filterBytes / partitions) }));
    const chunkKeys = 8_192;
    const chunks = Array.from({ length: partitions }, () => ({ view: new DataView(new ArrayBuffer(chunkKeys * STORED_KEY_BYTES)), n: 0 }));
    const flush = (p: number) => {
      const c = chunks[p]!;
      indexes[p]!.loadPacked(new Uint8Array(c.view.buffer, 0, c.n * STORED_KEY_BYTES), nowMs);
      c.n = 0;
    };
    const t0 = performance.now();
    for (let i = 0; i < firstAdded; i++) {
      if ((i & 0xfffff) === 0) {
        signal.throwIfAborted();
        if (i > 0 && (i & 0x3ffffff) === 0) b.log(`  dedup fill: ${i.toLocaleString('en-US')} keys, ${Math.round(i / ((performance.now() - t0) / 1000)).toLocaleString('en-US')}/s`);
      }
      hashOf(i);
      const c = chunks[i % partitions]!;
      const o = c.n * STORED_KEY_BYTES;
      const at = atOf(i);
      c.view.setUint32(o, h[0]!, true);
      c.view.setUint32(o + 4, h[1]!, true);
      c.view.setUint32(o + 8, at % 4294967296, true);
      c.view.setUint32(o + 12, Math.floor(at / 4294967296), true);
      if (++c.n === chunkKeys) flush(i % partitions);
    }
    for (let p = 0; p < partitions; p++) flush(p);
    for (const ix of indexes) ix.filtersCompleteFrom(fillStartMs); // as after a start-up load: every key since then is in
    const loadSeconds = (performance.now() - t0) / 1000;

    // The newest keys, as strings through add(), in batches of 1,000 events (0.1 s at 10k/s).
    let addMs = 0;
    for (let i = firstAdded; i < total; i += 1_000) {
      const batch: string[][] = Array.from({ length: partitions }, () => []);
      for (let j = i; j < Math.min(total, i + 1_000); j++) batch[j % partitions]!.push(keyOf(j));
      const at = atOf(i);
      const t = performance.now();
      for (let p = 0; p < partitions; p++) indexes[p]!.add(batch[p]!, at);
      addMs += performance.now() - t;
    }
    global.gc?.();
    const after = process.memoryUsage();

    // 1M keys never added: the share a fresh event costs a store look-up.
    let lookups = 0;
    const probes = 1_000_000;
    for (let i = 0; i < probes; i++) {
      const k = `12:gateway-prod\u0000new_${(i * 2654435761) % 4294967296}_${i}`;
      const ix = indexes[i % partitions]!;
      if (ix.has(k, nowMs)) throw new Error(`a key never added is held: ${k}`);
      if (ix.needsStoreLookup(k, nowMs)) lookups++;
    }
    // Every key of the window is either held or looked up (a sample of them).
    for (let i = 0; i < total; i += Math.max(1, Math.floor(total / 100_000))) {
      const k = keyOf(i);
      const ix = indexes[i % partitions]!;
      if (atOf(i) > nowMs - windowMs && !ix.has(k, nowMs) && !ix.needsStoreLookup(k, nowMs)) throw new Error(`key ${i} of the window would be taken as new`);
    }
    const stats = indexes.map((ix) => ix.filterStats(nowMs)!);
    const mib = (b: number) => round(b / 2 ** 20, 1);
    const rssDelta = after.rss - before.rss;
    let firstInWindow = 0; // the first key accepted after nowMs - window
    for (let lo = 0, hi = total; lo < hi; ) {
      const mid = Math.floor((lo + hi) / 2);
      if (atOf(mid) > nowMs - windowMs) hi = firstInWindow = mid;
      else lo = firstInWindow = mid + 1;
    }
    b.results.dedupMemory = {
      keys,
      keysInWindow: total - firstInWindow,
      keysInFilters: total,
      scaleOfTarget,
      partitions,
      gcExposed: typeof global.gc === 'function',
      keyExample: '12:gateway-prod\\u0000evt_<10 digits>_<n> (~35 characters)',
      config: { DEDUP_WINDOW: '24h', DEDUP_FILTER_MEMORY: `${mib(filterBytes)}MiB`, DEDUP_MAX_MEMORY_KEYS: mapKeys, filterBuckets: FILTER_BUCKETS },
      mapKeys: indexes.reduce((a, ix) => a + ix.size, 0),
      filterKeys: stats.reduce((a, s) => a + s.keys, 0),
      rssMiB: { before: mib(before.rss), after: mib(after.rss), delta: mib(rssDelta) },
      heapUsedMiB: { before: mib(before.heapUsed), after: mib(after.heapUsed) },
      arrayBuffersMiB: { before: mib(before.arrayBuffers), after: mib(after.arrayBuffers) },
      // The heap and array buffers the indexes added: RSS only says so in a fresh process (after
      // other sections it reuses memory it already holds, and its delta reads low).
      bytesPerKey: round((after.heapUsed - before.heapUsed + after.arrayBuffers - before.arrayBuffers) / keys, 2),
      rssBytesPerKey: round(rssDelta / keys, 2),
      // what the indexes hold (map on the heap, filters in array buffers), scaled to 864M keys in the window
      indexMiBAtTarget: mib((after.heapUsed - before.heapUsed + after.arrayBuffers - before.arrayBuffers) / scaleOfTarget),
      storeLookupShare: round(lookups / probes, 4),
      expectedStoreLookupShare: round(stats.reduce((a, s) => a + s.expectedFpr, 0) / partitions, 4),
      filterLoadKeysPerSecond: Math.round(firstAdded / loadSeconds),
      addKeysPerSecond: Math.round((total - firstAdded) / (addMs / 1000)),
      fillSeconds: round(loadSeconds + addMs / 1000, 1),
    };
    b.log(`  dedup: ${JSON.stringify(b.results.dedupMemory)}`);
  },
};
