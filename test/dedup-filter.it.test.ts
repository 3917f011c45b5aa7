import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NatsServerHandle } from '../common/nats-server.ts';
import { eventKey } from '../ingest/index.ts';
import { hashKey, KEY_HASH_EXACT_SQL, KEY_HASH_SQL, STORED_KEY_PACKED_SQL, type DedupIndex } from '../processor/index.ts';
import { client, total } from './api-client.ts';
import { ce, eventually, startTestNats, startTestRuntime, testConfig, type TestRuntime } from './harness.ts';

/** The processor's state, read for what a test cannot see from outside: when the filters are loaded. */
// The processor's dedup state by partition (processor/dedup-store.ts), to see when filters are loaded.
const internals = (rt: TestRuntime) => (rt.processor as unknown as { dedup: { indexes: Map<number, DedupIndex>; verifyUntil: Map<number, number> } }).dedup;

describe('dedup filters loaded from event_keys', () => {
  let nats: NatsServerHandle;
  let rt: TestRuntime;
  let c: ReturnType<typeof client>;

  beforeAll(async () => {
    nats = await startTestNats();
    // One partition, a map of 1,000 keys; a take-over checks the store for 4 s (2 × ack wait + lease TTL).
    rt = await startTestRuntime(testConfig(nats.url, { EVENT_PARTITIONS: '1', DEDUP_MAX_MEMORY_KEYS: '1000', DEDUP_FILTER_MEMORY: '1MiB', PROCESSOR_ACK_WAIT: '1s', PROCESSOR_LEASE_TTL: '2s' }));
    c = client(rt.app!, rt.adminKey);
    await c.createMeter({ slug: 'calls', eventType: 'call', aggregation: 'COUNT' });
  });
  afterAll(async () => {
    await rt?.stop();
    await nats?.stop();
  });

  it('ClickHouse hashes ASCII keys as hashKey does, and says which keys it cannot', async () => {
    const { ch } = rt.store!;
    const keys: [string, string][] = [
      ['test', 'a'],
      ['', ''],
      ['gateway-prod', 'evt_4294967295_123456789'],
      ['src with spaces', 'id\twith\ttabs\u0000and NUL'],
      ['x'.repeat(101), 'y'.repeat(7)],
      ['südwest', 'a'],
      ['a', 'wörld ✓ 𝄞'],
    ];
    const at = 1_767_225_600_123;
    for (const [source, id] of keys) {
      const rs = await ch.query({
        query: `SELECT ${KEY_HASH_SQL[0]}, ${KEY_HASH_SQL[1]}, ${KEY_HASH_EXACT_SQL}, ${STORED_KEY_PACKED_SQL}
                FROM (SELECT {source:String} AS source, {id:String} AS id, fromUnixTimestamp64Milli({at:Int64}) AS ingested_at)`,
        query_params: { source, id, at },
        format: 'JSONCompactEachRow',
      });
      const [row] = await rs.json<[number, number, number, string]>();
      const [h1, h2, exact, packed] = row!;
      const ascii = [...source, ...id].every((ch) => ch.charCodeAt(0) < 0x80);
      expect(exact, `${source}/${id}`).toBe(ascii ? 1 : 0);
      if (!ascii) continue;
      const out = new Uint32Array(2);
      hashKey(eventKey({ source, id }), out);
      expect([h1, h2]).toEqual([out[0], out[1]]);
      const bytes = Buffer.from(packed, 'hex');
      expect([bytes.readUInt32LE(0), bytes.readUInt32LE(4), Number(bytes.readBigInt64LE(8))]).toEqual([out[0], out[1], at]);
    }
  });

  it('after a restart, every key of the window is in the filters: duplicates the map no longer holds are dropped, fresh keys skip the store', async () => {
    const ev = (id: string, source = 'filters') => ({ ...ce({ id, type: 'call', subject: 'filters', time: '2026-11-01T10:00:00Z' }), source });
    // 2,500 keys in three pages of the load; some from a source ClickHouse cannot hash like hashKey (non-ASCII)
    const first = Array.from({ length: 2_500 }, (_, i) => ev(`f${i}`, i % 100 === 7 ? 'südwest' : 'filters'));
    expect((await c.ingest(first)).statusCode).toBe(202);
    await eventually(() => total(c, 'calls', 'filters'), (x) => x === '2500');

    await rt.stop();
    rt = await startTestRuntime(rt.config);
    c = client(rt.app!, rt.adminKey);
    // the filters are loaded in the background; the take-over's store checks end after 4 s
    await eventually(async () => internals(rt).indexes.get(0)?.filterStats(Date.now())?.coversWindow === true && Date.now() > (internals(rt).verifyUntil.get(0) ?? Infinity), (x) => x, 30_000);
    expect(internals(rt).indexes.get(0)!.size).toBe(1_000);

    const lookups = async () => (await rt.metrics.processorStoreLookups.get()).values[0]?.value ?? 0;
    const before = await lookups();
    const fresh = Array.from({ length: 500 }, (_, i) => ev(`g${i}`));
    expect((await c.ingest([...first, ...fresh])).statusCode).toBe(202);
    await eventually(() => total(c, 'calls', 'filters'), (x) => x === '3000');
    // every duplicate was dropped (the oldest 1,500 only the filters knew), and nothing more comes
    await new Promise((r) => setTimeout(r, 1_000));
    expect(await total(c, 'calls', 'filters')).toBe('3000');
    // the 1,500 duplicates the map did not hold were looked up; of the 500 fresh keys, only false positives
    const looked = (await lookups()) - before;
    expect(looked).toBeGreaterThanOrEqual(1_500);
    expect(looked).toBeLessThan(1_500 + 25);
  });
});
