import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NatsServerHandle } from '../common/nats-server.ts';
import { partitionOf } from '../common/partition.ts';
import { client, total } from './api-client.ts';
import { ce, eventually, startTestNats, startTestRuntime, testConfig, type TestRuntime } from './harness.ts';

const HOUR = 3_600_000;
const PARTITIONS = 8;
const LONE = 'contains a lone UTF-16 surrogate (invalid Unicode)';

type ErrorBody = { code: string; message: string; errors?: { index: number; id?: string; field: string; reason: string }[] };

/**
 * Input the store cannot hold is refused at ingest, naming the event and the field, and nothing
 * of its batch is stored; input it can hold is stored exactly once. Real nats-server and
 * ClickHouse; every check is what a producer sees (status, error body) or what a query returns.
 */
describe('hostile input: refused at the edge, or stored exactly once', () => {
  let nats: NatsServerHandle;
  let rt: TestRuntime;
  let c: ReturnType<typeof client>;
  const t0 = Math.floor(Date.now() / HOUR) * HOUR - HOUR;
  const at = (minute: number) => new Date(t0 + minute * 60_000).toISOString();

  beforeAll(async () => {
    nats = await startTestNats();
    rt = await startTestRuntime(testConfig(nats.url, { EVENT_PARTITIONS: String(PARTITIONS) }));
    c = client(rt.app!, rt.adminKey);
    await c.createMeter({ slug: 'tokens', eventType: 'llm', aggregation: 'SUM', valueProperty: '$.tokens', groupBy: { model: '$.model' } });
    await c.createMeter({ slug: 'calls', eventType: 'llm', aggregation: 'COUNT' });
  });
  afterAll(async () => {
    await rt?.stop();
    await nats?.stop();
  });

  const ev = (id: string, subject: string, data: Record<string, unknown> = {}) => ce({ id, type: 'llm', subject, time: at(1), data: { tokens: 1, model: 'm1', ...data } });
  const streamMessages = async () => (await rt.nats.jsm.streams.info(rt.config.NATS_STREAM)).state.messages;
  /** Posts raw bytes as the body. */
  const postBytes = (bytes: Uint8Array, headers: Record<string, string> = {}) =>
    rt.app!.inject({ method: 'POST', url: '/api/v1/events', headers: { authorization: `Bearer ${rt.adminKey}`, 'content-type': 'application/json', ...headers }, payload: Buffer.from(bytes) });
  let markers = 0;
  /** Ingests a marker event and waits until it is counted: everything published before it has been processed. */
  const drain = async () => {
    const subject = `marker-${++markers}`;
    expect((await c.ingest([ev(subject, subject)])).statusCode).toBe(202);
    await eventually(() => total(c, 'calls', subject), (v) => v === '1');
  };
  const storedIds = async (subject: string) => {
    const { ch, db } = rt.store!;
    const rs = await ch.query({ query: `SELECT id FROM ${db}.events_raw WHERE subject = {s:String} ORDER BY id`, query_params: { s: subject }, format: 'JSONEachRow' });
    return (await rs.json<{ id: string }>()).map((r) => r.id);
  };
  /** Expects a 400 naming exactly `errors`, and that nothing reached the event log. */
  const expectRefused = async (send: () => Promise<{ statusCode: number; json(): unknown; body: string }>, errors: ErrorBody['errors']) => {
    const before = await streamMessages();
    const r = await send();
    expect(r.statusCode, r.body).toBe(400);
    const body = r.json() as ErrorBody;
    expect(body.code).toBe('INGEST_INVALID_EVENTS');
    expect(body.errors).toEqual(errors);
    expect(await streamMessages()).toBe(before);
    return body;
  };

  describe('lone UTF-16 surrogates', () => {
    // `\ud83d` as JSON text: half of an emoji's surrogate pair, valid JSON but not valid Unicode.
    const cases: [string, string | ((bad: { data: Record<string, unknown> }) => string), (s: string) => string][] = [
      ['id', 'id', (s) => `{"specversion":"1.0","id":"gpt-${s}","source":"test","type":"llm","subject":"lone","data":{"tokens":1}}`],
      ['source', 'source', (s) => `{"specversion":"1.0","id":"lone-source","source":"src-${s}","type":"llm","subject":"lone","data":{"tokens":1}}`],
      ['type', 'type', (s) => `{"specversion":"1.0","id":"lone-type","source":"test","type":"llm-${s}","subject":"lone","data":{"tokens":1}}`],
      ['subject', 'subject', (s) => `{"specversion":"1.0","id":"lone-subject","source":"test","type":"llm","subject":"lone-${s}","data":{"tokens":1}}`],
      ['a data value (a group-by value)', 'data.model', (s) => `{"specversion":"1.0","id":"lone-value","source":"test","type":"llm","subject":"lone","data":{"tokens":1,"model":"gpt-${s}"}}`],
      ['a data key', (bad) => `data.${Object.keys(bad.data).find((k) => k.startsWith('k-'))}`, (s) => `{"specversion":"1.0","id":"lone-key","source":"test","type":"llm","subject":"lone","data":{"tokens":1,"k-${s}":"v"}}`],
      ['a nested data value', 'data.nested.list.1', (s) => `{"specversion":"1.0","id":"lone-nested","source":"test","type":"llm","subject":"lone","data":{"tokens":1,"nested":{"list":["ok","${s}x"]}}}`],
    ];
    for (const [name, field, event] of cases) {
      it(`in ${name} -> 400 naming the event and the field; nothing of the batch is stored`, async () => {
        for (const s of ['\\ud83d', '\\udc00', '\\ude00\\ud83d']) {
          const text = `[${JSON.stringify(ev('lone-ok', 'lone'))},${event(s)}]`;
          const bad = JSON.parse(text)[1] as { id: string; data: Record<string, unknown> };
          await expectRefused(() => c.ingest(text), [{ index: 1, id: bad.id, field: typeof field === 'string' ? field : field(bad), reason: LONE }]);
        }
      });
    }

    it('a surrogate pair (an emoji) written as escapes is valid and stored', async () => {
      const r = await c.ingest(`[{"specversion":"1.0","id":"pair","source":"test","type":"llm","subject":"lone","time":"${at(1)}","data":{"tokens":2,"model":"gpt-\\ud83d\\ude00"}}]`);
      expect(r.statusCode, r.body).toBe(202);
      await eventually(() => total(c, 'tokens', 'lone'), (v) => v === '2');
      const q = await c.query('tokens', { subject: 'lone', groupBy: 'model' });
      expect(q.data.map((d) => d.groupBy.model)).toEqual(['gpt-😀']);
      expect(await storedIds('lone')).toEqual(['pair']);
    });

    it('published straight to NATS: the valid event is counted, the one with a lone surrogate is dead-lettered naming the field', async () => {
      const text = `[${JSON.stringify(ev('direct-ok', 'direct-lone'))},{"specversion":"1.0","id":"direct-bad","source":"test","type":"llm","subject":"direct-lone","data":{"tokens":1,"model":"gpt-\\ud83d"}}]`;
      await rt.nats.js.publish(rt.nats.eventSubject('direct'), text);
      await eventually(() => total(c, 'calls', 'direct-lone'), (v) => v === '1');
      const list = await eventually(
        async () => (await c.get('/api/v1/dead-letters')).json() as { items: { reason: string; event: string }[] },
        (l) => l.items.some((d) => d.event.includes('direct-bad')),
      );
      expect(list.items.find((d) => d.event.includes('direct-bad'))?.reason).toBe(`data.model: ${LONE}`);
      expect(await storedIds('direct-lone')).toEqual(['direct-ok']);
    });
  });

  describe('invalid UTF-8', () => {
    const bytes = (...parts: (string | number[])[]) => Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p) : Buffer.from(p))));
    const event = (idBytes: number[]) => bytes('[', JSON.stringify(ev('utf8-ok', 'utf8')), ',{"specversion":"1.0","id":"a', idBytes, '","source":"test","type":"llm","subject":"utf8","data":{"tokens":1}}]');

    it('ids a\\xff and a\\xfe are refused, not collapsed into one id: 400 naming the event, the field and the byte offset', async () => {
      for (const b of [0xff, 0xfe]) {
        const body = event([b]);
        const offset = body.indexOf(b);
        const r = await expectRefused(() => postBytes(body), [{ index: 1, id: 'a\ufffd', field: 'id', reason: `body is not valid UTF-8 (byte 0x${b.toString(16)} at offset ${offset})` }]);
        expect(r.message).toMatch(/not valid UTF-8/);
      }
      await drain();
      expect(await storedIds('utf8')).toEqual([]);
    });

    it('a raw surrogate encoded in UTF-8 bytes (CESU-8 ED A0 BD) and a truncated sequence are refused too', async () => {
      for (const seq of [[0xed, 0xa0, 0xbd], [0xe2, 0x82]]) {
        const r = await postBytes(event(seq));
        expect(r.statusCode, r.body).toBe(400);
        expect((r.json() as ErrorBody).errors).toMatchObject([{ index: 1, field: 'id', reason: expect.stringMatching(/^body is not valid UTF-8/) }]);
      }
    });

    it('outside any string: 400 INGEST_MALFORMED_JSON with the byte offset', async () => {
      const body = bytes('[', JSON.stringify(ev('utf8-x', 'utf8')), ']', [0xff]);
      const r = await postBytes(body);
      expect(r.statusCode).toBe(400);
      expect(r.json()).toMatchObject({ code: 'INGEST_MALFORMED_JSON', message: `request body is not valid UTF-8 (byte 0xff at offset ${body.length - 1})` });
    });

    it('valid multi-byte UTF-8 is stored byte for byte', async () => {
      const id = 'ü日🚀';
      const r = await postBytes(bytes(JSON.stringify([ev(id, 'utf8-valid')])));
      expect(r.statusCode, r.body).toBe(202);
      await eventually(() => storedIds('utf8-valid'), (ids) => ids.length === 1);
      expect(await storedIds('utf8-valid')).toEqual([id]);
    });
  });

  describe('nesting depth', () => {
    /** `objects` objects, one in the other, around `leaf`. */
    const nested = (objects: number, leaf = '1') => '{"a":'.repeat(objects) + leaf + '}'.repeat(objects);
    const withData = (id: string, data: string) => `{"specversion":"1.0","id":"${id}","source":"test","type":"llm","subject":"deep","time":"${at(1)}","data":${data}}`;

    it('data nested 64 levels is stored; 65 levels -> 400 naming data and the limit', async () => {
      const ok = await c.ingest(`[${withData('deep-64', `{"tokens":1,"n":${nested(63)}}`)}]`);
      expect(ok.statusCode, ok.body).toBe(202);
      await expectRefused(() => c.ingest(`[${JSON.stringify(ev('deep-ok', 'deep'))},${withData('deep-65', `{"tokens":1,"n":${nested(64)}}`)}]`), [
        { index: 1, id: 'deep-65', field: 'data', reason: 'data is nested more than 64 levels deep' },
      ]);
      await eventually(() => storedIds('deep'), (ids) => ids.length === 1);
      expect(await storedIds('deep')).toEqual(['deep-64']);
    });

    it('10,000 levels of objects or arrays, with exact or inexact numbers -> 400, not a crash', async () => {
      for (const data of [`{"a":${nested(10_000)}}`, `{"a":${'['.repeat(10_000)}${']'.repeat(10_000)}}`, `{"a":${nested(10_000, '1.50')}}`]) {
        await expectRefused(() => c.ingest(withData('deep-10k', data)), [{ index: 0, id: 'deep-10k', field: 'data', reason: 'data is nested more than 64 levels deep' }]);
      }
    });

    it('a 100,000-level body -> 400, not a crash or a 500', async () => {
      for (const body of ['['.repeat(100_000) + ']'.repeat(100_000), withData('deep-100k', nested(100_000, '1.50'))]) {
        const r = await c.ingest(body);
        expect(r.statusCode, r.body.slice(0, 200)).toBe(400);
      }
      // The service is still fine.
      await drain();
    });
  });

  describe('numbers', () => {
    it('a number that is not finite as a double (1e400, -1e400, 1000 digits) -> 400 naming the field', async () => {
      for (const n of ['1e400', '-1e400', '9'.repeat(1000)]) {
        await expectRefused(() => c.ingest(`[${JSON.stringify(ev('num-ok', 'num'))},${JSON.stringify(ev('num-bad', 'num')).replace('"tokens":1', `"tokens":1,"x":{"big":${n}}`)}]`), [
          { index: 1, id: 'num-bad', field: 'data.x.big', reason: 'the number is out of range: not finite as a double (magnitude beyond 1.8e308)' },
        ]);
      }
    });

    it('a tiny or very long but finite number in data is stored as written', async () => {
      const tiny = '1e-400';
      const long = `0.${'0'.repeat(998)}1`;
      const r = await c.ingest(`[${JSON.stringify(ev('num-tiny', 'num-fine')).replace('"tokens":1', `"tokens":1,"tiny":${tiny},"long":${long}`)}]`);
      expect(r.statusCode, r.body).toBe(202);
      await eventually(() => total(c, 'tokens', 'num-fine'), (v) => v === '1');
      const { ch, db } = rt.store!;
      const rs = await ch.query({ query: `SELECT data FROM ${db}.events_raw WHERE id = 'num-tiny'`, format: 'JSONEachRow' });
      const [row] = await rs.json<{ data: string }>();
      expect(row!.data).toContain(`"tiny":${tiny}`);
      expect(row!.data).toContain(`"long":${long}`);
    });
  });

  describe('Idempotency-Key', () => {
    // Ids by partition: request 2 touches partition 0 (as request 1 did) and partition 1.
    const idOn = (partition: number, prefix: string) => {
      for (let i = 0; ; i++) if (partitionOf('test', `${prefix}-${i}`, PARTITIONS) === partition) return `${prefix}-${i}`;
    };
    const a = idOn(0, 'idem-a');
    const b = idOn(0, 'idem-b');
    const cId = idOn(1, 'idem-c');

    it('reused with a different body -> 409 and nothing of it stored; the identical body again -> 202, stored once', async () => {
      const headers = { 'idempotency-key': 'key-K' };
      const first = await c.ingest([ev(a, 'idem')], headers);
      expect(first.statusCode, first.body).toBe(202);
      expect(first.json()).toEqual({ accepted: 1, duplicate: false });

      const before = await streamMessages();
      const second = await c.ingest([ev(b, 'idem'), ev(cId, 'idem')], headers);
      expect(second.statusCode, second.body).toBe(409);
      expect(second.json()).toMatchObject({
        code: 'INGEST_IDEMPOTENCY_CONFLICT',
        message: expect.stringMatching(/Idempotency-Key "key-K" .*only be reused for the identical body/),
      });
      expect(await streamMessages()).toBe(before);

      const replay = await c.ingest([ev(a, 'idem')], headers);
      expect(replay.statusCode).toBe(202);
      expect(replay.json()).toEqual({ accepted: 1, duplicate: true });

      // The same events under a fresh key are stored.
      const third = await c.ingest([ev(b, 'idem'), ev(cId, 'idem')], { 'idempotency-key': 'key-K2' });
      expect(third.statusCode).toBe(202);
      await eventually(() => total(c, 'calls', 'idem'), (v) => v === '3');
      await drain();
      expect(await storedIds('idem')).toEqual([a, b, cId].sort());
    });

    it('the OpenAPI description documents the rule and the 409', async () => {
      const doc = (await rt.app!.inject({ method: 'GET', url: '/docs/json' })).json() as { paths: Record<string, { post?: { description: string; responses: Record<string, unknown> } }> };
      const post = doc.paths['/api/v1/events']?.post;
      expect(post?.description).toMatch(/same key and the identical body is stored once.*409 INGEST_IDEMPOTENCY_CONFLICT/);
      expect(Object.keys(post?.responses ?? {})).toEqual(expect.arrayContaining(['202', '400', '409']));
    });

    it('concurrent requests with one key and different bodies: exactly one is accepted', async () => {
      const bodies = Array.from({ length: 6 }, (_, i) => [ev(`race-${i}`, 'idem-race')]);
      const rs = await Promise.all(bodies.map((body) => c.ingest(body, { 'idempotency-key': 'key-race' })));
      expect(rs.map((r) => r.statusCode).sort()).toEqual([202, 409, 409, 409, 409, 409]);
      const winner = rs.findIndex((r) => r.statusCode === 202);
      await eventually(() => total(c, 'calls', 'idem-race'), (v) => v === '1');
      await drain();
      expect(await storedIds('idem-race')).toEqual([`race-${winner}`]);
    });
  });

  it('after all of it, reconciliation finds rollups equal to the raw events and nothing is stuck', async () => {
    await drain();
    const from = new Date(t0 - 86_400_000).toISOString();
    const to = new Date(Date.now() + 86_400_000).toISOString();
    const r = await c.get(`/api/v1/reconcile?from=${encodeURIComponent(from)}&to=${encodeURIComponent(to)}`);
    expect(r.statusCode).toBe(200);
    expect((r.json() as { ok: boolean }).ok).toBe(true);
  });
});
