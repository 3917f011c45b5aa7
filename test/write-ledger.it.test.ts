import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Kvm } from '@nats-io/kv';
import type { NatsServerHandle } from '../common/nats-server.ts';
import { partitionOf } from '../common/partition.ts';
import { insertRawRows, type RawRow } from '../processor/raw-rows.ts';
import { ledgerEntry, WriteLedger } from '../processor/write-ledger.ts';
import { ce, eventually, startTestNats, startTestRuntime, testConfig, type TestRuntime } from './harness.ts';

/**
 * The write ledger against real NATS and ClickHouse: what a process killed half-way through an
 * insert leaves behind is completed exactly, table by table, by whoever owns the partition next.
 */
describe('write ledger', () => {
  let nats: NatsServerHandle;
  let api: TestRuntime;
  const config = () => testConfig(nats.url, { EVENT_PARTITIONS: '4', PROCESSOR_LEASE_TTL: '2s' });
  let cfg: ReturnType<typeof config>;

  beforeAll(async () => {
    nats = await startTestNats();
    cfg = config();
    api = await startTestRuntime(cfg, ['api']);
    const r = await api.app!.inject({ method: 'POST', url: '/api/v1/meters', headers: { authorization: `Bearer ${api.adminKey}` }, payload: { slug: 'tokens', eventType: 'ledger.test', aggregation: 'SUM', valueProperty: '$.tokens' } });
    expect(r.statusCode).toBe(201);
    await eventually(async () => api.meters.list().length, (n) => n === 1);
  }, 120_000);
  afterAll(async () => {
    await api?.stop();
    await nats?.stop();
  });

  const q = async (sql: string) => {
    const { ch, db } = api.store!;
    const rs = await ch.query({ query: sql.replaceAll('DB.', `${db}.`), format: 'JSONEachRow' });
    return rs.json<Record<string, string>>();
  };

  /** Runs `write` with the materialized view `view` detached: the state a kill between two tables of a fan-out leaves. */
  const withViewDetached = async (view: string, write: () => Promise<unknown>) => {
    const { ch, db } = api.store!;
    await ch.command({ query: `DETACH TABLE ${db}.${view}` });
    try {
      await write();
    } finally {
      await ch.command({ query: `ATTACH TABLE ${db}.${view}` });
    }
  };
  /** The hour rollup's view (its name carries the table's version). */
  const hourView = async () => {
    const { ch, db } = api.store!;
    const rs = await ch.query({ query: `SELECT name FROM system.tables WHERE database = {db:String} AND engine = 'MaterializedView' AND name LIKE 'meter_usage_1h%'`, query_params: { db }, format: 'JSONEachRow' });
    return ((await rs.json<{ name: string }>()) as [{ name: string }])[0].name;
  };

  it('an insert cut off after events_raw and event_keys (meter_values and rollups missing) is completed by repeating it with the same token, and nothing is doubled', async () => {
    const meter = api.meters.list()[0]!;
    const rows: RawRow[] = Array.from({ length: 50 }, (_, i) => ({
      source: 'partial', id: `p-${i}`, type: 'ledger.test', subject: 'partial-co', time: Date.UTC(2026, 10, 3, 10, i), ingested_at: Date.UTC(2026, 11, 1), received_at: Date.UTC(2026, 11, 1),
      data: `{"tokens":${i + 1}}`, stream_seq: 1, meter_values: [{ meter_id: meter.id, value: String(i + 1), value_key: '', group_by: {} }],
    }));
    // The state a SIGKILL between two views leaves: events_raw and event_keys have the block,
    // meter_values (and the rollups it feeds) do not.
    await withViewDetached('meter_values_mv', () => insertRawRows(api.store!, rows, 'ledger-test:partial'));
    expect((await q(`SELECT count() AS n FROM DB.meter_values WHERE source = 'partial'`))[0]!.n).toBe('0');
    // The repair the ledger makes: the identical insert again.
    await insertRawRows(api.store!, rows, 'ledger-test:partial');
    await insertRawRows(api.store!, rows, 'ledger-test:partial');
    expect(await q(`SELECT toString(count()) AS n, toString(uniqExact(id)) AS u FROM DB.events_raw WHERE source = 'partial'`)).toEqual([{ n: '50', u: '50' }]);
    expect(await q(`SELECT toString(count()) AS n FROM DB.event_keys WHERE source = 'partial'`)).toEqual([{ n: '50' }]);
    expect(await q(`SELECT toString(count()) AS n, toString(sum(value)) AS s FROM DB.meter_values WHERE source = 'partial'`)).toEqual([{ n: '50', s: '1275' }]);
    // Every rollup, through the usage API (which says which table answered).
    for (const [from, source] of [['2026-11-03T00:00:00Z', 'meter_usage_1d_v2'], ['2026-11-03T01:00:00Z', 'meter_usage_1h_v2'], ['2026-11-03T00:01:00Z', 'meter_usage_1m_v2']] as const) {
      const r = await api.app!.inject({ method: 'GET', url: `/api/v1/meters/tokens/query?subject=partial-co&from=${from}&to=2026-11-04T00:00:00Z`, headers: { authorization: `Bearer ${api.adminKey}` } });
      const body = r.json() as { source: string; data: { value: string }[] };
      expect(body.source.startsWith(source)).toBe(true);
      expect(body.data[0]?.value).toBe('1275');
    }
  });

  it('an insert cut off before event_keys is completed by the same insert', async () => {
    const meter = api.meters.list()[0]!;
    const rows: RawRow[] = Array.from({ length: 20 }, (_, i) => ({
      source: 'partial3', id: `k-${i}`, type: 'ledger.test', subject: 'partial3-co', time: Date.UTC(2026, 10, 5, 10, i), ingested_at: Date.now(), received_at: Date.now(),
      data: `{"tokens":${i + 1}}`, stream_seq: 3, meter_values: [{ meter_id: meter.id, value: String(i + 1), value_key: '', group_by: {} }],
    }));
    await withViewDetached('event_keys_mv', () => insertRawRows(api.store!, rows, 'ledger-test:partial3'));
    expect(await q(`SELECT toString(count()) AS n FROM DB.event_keys WHERE source = 'partial3'`)).toEqual([{ n: '0' }]);
    await insertRawRows(api.store!, rows, 'ledger-test:partial3');
    expect(await q(`SELECT toString(count()) AS n FROM DB.event_keys WHERE source = 'partial3'`)).toEqual([{ n: '20' }]);
    expect(await q(`SELECT toString(count()) AS n FROM DB.events_raw WHERE source = 'partial3'`)).toEqual([{ n: '20' }]);
    expect(await q(`SELECT toString(count()) AS n FROM DB.meter_values WHERE source = 'partial3'`)).toEqual([{ n: '20' }]);
  });

  it('an insert cut off after meter_values (a rollup missing) is completed by the same insert: the view below a deduplicated table still gets the block', async () => {
    const meter = api.meters.list()[0]!;
    const rows: RawRow[] = Array.from({ length: 30 }, (_, i) => ({
      source: 'partial2', id: `q-${i}`, type: 'ledger.test', subject: 'partial2-co', time: Date.UTC(2026, 10, 4, 10, i), ingested_at: Date.UTC(2026, 11, 1), received_at: Date.UTC(2026, 11, 1),
      data: `{"tokens":${i + 1}}`, stream_seq: 2, meter_values: [{ meter_id: meter.id, value: String(i + 1), value_key: '', group_by: {} }],
    }));
    await withViewDetached(await hourView(), () => insertRawRows(api.store!, rows, 'ledger-test:partial2'));
    await insertRawRows(api.store!, rows, 'ledger-test:partial2');
    expect(await q(`SELECT toString(count()) AS n FROM DB.meter_values WHERE source = 'partial2'`)).toEqual([{ n: '30' }]);
    for (const [from, source] of [['2026-11-04T00:00:00Z', 'meter_usage_1d'], ['2026-11-04T01:00:00Z', 'meter_usage_1h'], ['2026-11-04T00:01:00Z', 'meter_usage_1m'], ['2026-11-04T00:00:01Z', 'meter_values']] as const) {
      const r = await api.app!.inject({ method: 'GET', url: `/api/v1/meters/tokens/query?subject=partial2-co&from=${from}&to=2026-11-05T00:00:00Z`, headers: { authorization: `Bearer ${api.adminKey}` } });
      const body = r.json() as { source: string; data: { value: string }[] };
      expect(body.source.startsWith(source)).toBe(true);
      expect(body.data[0]?.value).toBe('465');
    }
  });

  it('a backfill page cut off between meter_values and a rollup is repeated before the backfill goes on', async () => {
    const { ch, db } = api.store!;
    const day = Date.UTC(2026, 10, 6);
    const rows: RawRow[] = Array.from({ length: 40 }, (_, i) => ({
      source: 'bf', id: `bf-${i}`, type: 'bf.test', subject: 'bf-co', time: day + 10 * 3_600_000 + i * 60_000, ingested_at: Date.now(), received_at: Date.now(),
      data: `{"n":${i + 1}}`, stream_seq: 4, meter_values: [],
    }));
    await insertRawRows(api.store!, rows, 'ledger-test:bf-raw');
    const r = await api.app!.inject({ method: 'POST', url: '/api/v1/meters', headers: { authorization: `Bearer ${api.adminKey}` }, payload: { slug: 'bf-n', eventType: 'bf.test', aggregation: 'SUM', valueProperty: '$.n' } });
    expect(r.statusCode).toBe(201);
    const meter = r.json() as { id: string };
    expect(meter.id).toBeTruthy();
    // The page a backfill was writing when the process died: in meter_values, not in the hour rollup.
    const page = rows.map((x, i) => ({ meter_id: meter.id, subject: x.subject, time: x.time, ingested_at: x.ingested_at, source: x.source, id: x.id, value: String(i + 1), value_key: '', group_by: {} }));
    const token = `backfill:${meter.id}:-1::0`;
    const kv = await new Kvm(api.nats.js).create('meterline_write_ledger', { history: 1 });
    await kv.put(`b.${meter.id}`, JSON.stringify({ v: 1, meterId: meter.id, token, rows: page }));
    await withViewDetached(await hourView(), () =>
      ch.insert({ table: `${db}.meter_values`, values: page, format: 'JSONEachRow', clickhouse_settings: { insert_deduplication_token: token, deduplicate_blocks_in_dependent_materialized_views: 1 } }),
    );
    const proc = await startTestRuntime(cfg, ['processor']);
    try {
      await eventually(async () => (await q(`SELECT toString(count()) AS n FROM DB.meter_backfills WHERE meter_id = '${meter.id}'`))[0]!.n, (n) => n !== '0', 60_000);
      expect(await q(`SELECT toString(count()) AS n, toString(uniqExact(id)) AS u FROM DB.meter_values WHERE meter_id = '${meter.id}'`)).toEqual([{ n: '40', u: '40' }]);
      for (const [from, source] of [['2026-11-06T00:00:00Z', 'meter_usage_1d'], ['2026-11-06T01:00:00Z', 'meter_usage_1h'], ['2026-11-06T00:01:00Z', 'meter_usage_1m']] as const) {
        const u = await api.app!.inject({ method: 'GET', url: `/api/v1/meters/bf-n/query?subject=bf-co&from=${from}&to=2026-11-07T00:00:00Z`, headers: { authorization: `Bearer ${api.adminKey}` } });
        const body = u.json() as { source: string; data: { value: string }[] };
        expect(body.source.startsWith(source)).toBe(true);
        expect(body.data[0]?.value).toBe('820');
      }
      expect(await kv.get(`b.${meter.id}`).then((e) => e?.operation)).not.toBe('PUT');
    } finally {
      await proc.stop();
    }
  }, 120_000);

  it('a processor restarted under the same name never overwrites an entry its predecessor left before it is repeated', async () => {
    const meters = api.meters.list();
    const before = await WriteLedger.open(api.nats.js, 'same-name');
    const left = await before.record(ledgerEntry('EVENTS:1-1:1', [3], 1, meters, [{ seq: 1, index: 0 }]));
    // The process dies here; the next one, same name, writes a batch of partition 0 first.
    const after = await WriteLedger.open(api.nats.js, 'same-name');
    const slot = await after.record(ledgerEntry('EVENTS:2-2:1', [0], 2, meters, [{ seq: 2, index: 0 }]));
    expect(slot.key).not.toBe(left.key);
    const pending = await after.pendingFor(3);
    expect(pending.map((p) => p.entry.token)).toEqual(['EVENTS:1-1:1']);
    await after.done(pending[0]!);
    await after.clear(slot);
    // Repeated and removed: its slot is free again.
    expect((await after.record(ledgerEntry('EVENTS:3-3:1', [0], 3, meters, [{ seq: 3, index: 0 }]))).key).toBe(left.key);
  });

  it('a processor taking a partition first repeats the insert a crashed owner recorded, then drops the redelivered events as duplicates', async () => {
    const { js } = api.nats;
    const partition = 1;
    const events = Array.from({ length: 400 }, (_, i) => ce({ id: `crashed-${i}`, source: 'ledger', type: 'ledger.test', subject: 'crash-co', time: new Date(Date.now() - 3_600_000).toISOString(), data: { tokens: 2 } })).filter(
      (e) => partitionOf(e.source, e.id, 4) === partition,
    );
    expect(events.length).toBeGreaterThan(50);
    const half = Math.floor(events.length / 2);
    const a = await js.publish(api.nats.partitionSubject(partition), JSON.stringify(events.slice(0, half)));
    const b = await js.publish(api.nats.partitionSubject(partition), JSON.stringify(events.slice(half)));
    // What a processor killed mid-insert leaves in the ledger: the batch of both messages, minus
    // event 3 of the first (a duplicate it had dropped; it is in the store already).
    const ingestedAtMs = Date.UTC(2026, 11, 2, 8, 0, 0, 123);
    const rowsOf = [...Array.from({ length: half }, (_, i) => ({ seq: a.seq, index: i })).filter((r) => r.index !== 3), ...Array.from({ length: events.length - half }, (_, i) => ({ seq: b.seq, index: i }))];
    const entry = ledgerEntry(`EVENTS:${a.seq}-${b.seq}:${rowsOf.length}`, [partition], ingestedAtMs, api.meters.list(), rowsOf);
    const kv = await new Kvm(js).create('meterline_write_ledger', { history: 1 });
    await kv.put('w.crashed-processor', JSON.stringify(entry));

    const proc = await startTestRuntime(cfg, ['processor']);
    try {
      await eventually(
        async () => (await q(`SELECT toString(count()) AS n FROM DB.events_raw WHERE source = 'ledger'`))[0]!.n,
        (n) => n === String(events.length),
        60_000,
      );
      // Settled: the messages are acknowledged, nothing more arrives.
      await eventually(async () => (await api.nats.jsm.consumers.info(api.nats.topology.stream, `processor-p${partition}`)).num_ack_pending + (await api.nats.jsm.consumers.info(api.nats.topology.stream, `processor-p${partition}`)).num_pending, (n) => n === 0, 60_000);
      const rows = await q(`SELECT toString(count()) AS n, toString(uniqExact(id)) AS u, toString(countIf(toUnixTimestamp64Milli(ingested_at) = ${ingestedAtMs})) AS replayed FROM DB.events_raw WHERE source = 'ledger'`);
      // Every event once; all but the one the crashed owner had dropped were written by the replay.
      expect(rows).toEqual([{ n: String(events.length), u: String(events.length), replayed: String(events.length - 1) }]);
      expect(await q(`SELECT toString(count()) AS n, toString(sum(value)) AS s FROM DB.meter_values WHERE source = 'ledger'`)).toEqual([{ n: String(events.length), s: String(2 * events.length) }]);
      expect(await kv.get('w.crashed-processor').then((e) => e?.operation)).not.toBe('PUT');
      const metrics = await proc.metrics.registry.getSingleMetricAsString('meterline_processor_ledger_replays_total');
      expect(metrics).toMatch(/meterline_processor_ledger_replays_total 1/);
    } finally {
      await proc.stop();
    }
  }, 120_000);

  it('a repeat that a table skips although it lacks the rows (its block recorded, its part lost) is completed event by event', async () => {
    const { ch, db } = api.store!;
    const partition = 2;
    const time = new Date(Date.now() - 60_000).toISOString();
    const events = Array.from({ length: 300 }, (_, i) => ce({ id: `hole-${i}`, source: 'hole', type: 'ledger.test', subject: 'hole-co', time, data: { tokens: 3 } })).filter((e) => partitionOf(e.source, e.id, 4) === partition);
    let proc = await startTestRuntime(cfg, ['processor']);
    const ack = await api.nats.js.publish(api.nats.partitionSubject(partition), JSON.stringify(events));
    const [{ at }] = (await eventually(
      async () => q(`SELECT toString(count()) AS n, toString(toUnixTimestamp64Milli(any(ingested_at))) AS at FROM DB.events_raw WHERE source = 'hole'`),
      (r) => r[0]!.n === String(events.length),
      60_000,
    )) as [{ at: string }];
    await proc.stop();
    // The instant the ledger cannot see: event_keys has recorded the block but holds no rows of it.
    await ch.command({ query: `ALTER TABLE ${db}.event_keys DELETE WHERE source = 'hole' SETTINGS mutations_sync = 2` });
    const entry = ledgerEntry(`${api.nats.topology.stream}:${ack.seq}-${ack.seq}:${events.length}`, [partition], Number(at), api.meters.list(), events.map((_e, index) => ({ seq: ack.seq, index })));
    const kv = await new Kvm(api.nats.js).create('meterline_write_ledger', { history: 1 });
    await kv.put('w.hole-crashed', JSON.stringify(entry));
    proc = await startTestRuntime(cfg, ['processor']);
    try {
      await eventually(async () => (await q(`SELECT toString(count()) AS n FROM DB.event_keys WHERE source = 'hole'`))[0]!.n, (n) => n === String(events.length), 60_000);
      expect(await q(`SELECT toString(count()) AS n FROM DB.events_raw WHERE source = 'hole'`)).toEqual([{ n: String(events.length) }]);
      expect(await q(`SELECT toString(count()) AS n FROM DB.meter_values WHERE source = 'hole'`)).toEqual([{ n: String(events.length) }]);
    } finally {
      await proc.stop();
    }
  }, 120_000);

  it('an event the store refuses goes to the dead-letter stream on its own: the rest of its batch is counted and the partition moves on', async () => {
    const { ch, db } = api.store!;
    // A store-side rule the processor cannot know: ClickHouse refuses any block holding this id.
    await ch.command({ query: `ALTER TABLE ${db}.events_raw ADD CONSTRAINT no_poison CHECK id != 'poison-7'` });
    const proc = await startTestRuntime(cfg, ['processor']);
    try {
      const time = new Date(Date.now() - 60_000).toISOString();
      const events = Array.from({ length: 60 }, (_, i) => ce({ id: `poison-${i}`, source: 'bisect', type: 'ledger.test', subject: 'bisect-co', time, data: { tokens: 1 } }));
      for (let i = 0; i < events.length; i += 20) await api.nats.js.publish(api.nats.eventSubject('bisect'), JSON.stringify(events.slice(i, i + 20)));
      await eventually(async () => (await q(`SELECT toString(count()) AS n FROM DB.events_raw WHERE source = 'bisect'`))[0]!.n, (n) => n === '59', 60_000);
      const dead = await eventually(
        async () => (await api.app!.inject({ method: 'GET', url: '/api/v1/dead-letters', headers: { authorization: `Bearer ${api.adminKey}` } })).json() as { items: { reason: string; event: string }[] },
        (b) => b.items.some((d) => d.event.includes('poison-7')),
        30_000,
      );
      const d = dead.items.find((x) => x.event.includes('poison-7'))!;
      expect(d.reason).toMatch(/^store rejected the event: .*(VIOLATED_CONSTRAINT|no_poison)/i);
      expect(dead.items.filter((x) => x.event.includes('"bisect"')).length).toBe(1);
      // And nothing is stuck: a later event of the same subject is counted.
      await api.nats.js.publish(api.nats.eventSubject('bisect'), JSON.stringify([ce({ id: 'after', source: 'bisect', type: 'ledger.test', subject: 'bisect-co', time, data: { tokens: 1 } })]));
      await eventually(async () => (await q(`SELECT toString(count()) AS n FROM DB.events_raw WHERE source = 'bisect'`))[0]!.n, (n) => n === '60', 60_000);
      expect((await q(`SELECT toString(count()) AS n, toString(uniqExact(id)) AS u FROM DB.meter_values WHERE source = 'bisect'`))[0]).toEqual({ n: '60', u: '60' });
    } finally {
      await proc.stop();
      await ch.command({ query: `ALTER TABLE ${db}.events_raw DROP CONSTRAINT no_poison` });
    }
  }, 120_000);
});
