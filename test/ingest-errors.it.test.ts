import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NatsServerHandle } from '../common/nats-server.ts';
import { client, total } from './api-client.ts';
import { ce, eventually, startTestNats, startTestRuntime, testConfig, type TestRuntime } from './harness.ts';

const MAX_BODY_BYTES = 20_000;
const MAX_BATCH_EVENTS = 50;
const HOUR = 3_600_000;
const DAY = 86_400_000;

/** Strings that break naive quoting, escaping, encoding or length handling. All are valid (≤ 256 UTF-16 units). */
const HOSTILE: Record<string, string> = {
  quotes: `it's "quoted" \`ticked\` ''double'' ""`,
  backslashes: 'C:\\path\\to\\file \\n \\t \\\' \\" \\\\ trailing\\',
  sql: "'; DROP TABLE events_raw; --",
  sqlEscaped: "\\'; DROP TABLE events_raw; -- \\",
  params: '{subject:String} {DB} ${DB} %s %d ?',
  long: 'L'.repeat(256),
  unicode: 'ünïcödé 日本語 🚀👩‍👩‍👧 שלום مرحبا \u202Eevil\u202C ZWJ\u200Dx',
  newlines: 'line1\nline2\r\nline3\ttab\u2028sep',
};
const TOO_LONG = 'x'.repeat(257);

describe('ingest errors: bad input gets a clear error and costs nothing else', () => {
  let nats: NatsServerHandle;
  let rt: TestRuntime;
  let c: ReturnType<typeof client>;
  // Event times: the previous full hour, so every event is in the past and in one UTC day range.
  const t0 = Math.floor(Date.now() / HOUR) * HOUR - HOUR;
  const at = (minute: number) => new Date(t0 + minute * 60_000).toISOString();

  beforeAll(async () => {
    nats = await startTestNats();
    rt = await startTestRuntime(testConfig(nats.url, { INGEST_MAX_BODY_BYTES: String(MAX_BODY_BYTES), INGEST_MAX_BATCH_EVENTS: String(MAX_BATCH_EVENTS) }));
    c = client(rt.app!, rt.adminKey);
    await c.createMeter({ slug: 'tokens', eventType: 'llm', aggregation: 'SUM', valueProperty: '$.tokens', groupBy: { model: '$.model', note: '$.note' } });
    await c.createMeter({ slug: 'calls', eventType: 'llm', aggregation: 'COUNT' });
  });
  afterAll(async () => {
    await rt?.stop();
    await nats?.stop();
  });

  const ev = (id: string, subject: string, tokens: number | string, extra: Record<string, unknown> = {}) =>
    ce({ id, type: 'llm', subject, time: at(1), data: { tokens, model: 'm1', ...extra } });
  const streamMessages = async () => (await rt.nats.jsm.streams.info(rt.config.NATS_STREAM)).state.messages;
  /** Ingests a marker event and waits until it is counted: everything published before it has been processed. */
  let markers = 0;
  const drain = async () => {
    const subject = `marker-${++markers}`;
    expect((await c.ingest([ev(subject, subject, 1)])).statusCode).toBe(202);
    await eventually(() => total(c, 'tokens', subject), (v) => v === '1');
  };

  describe('a batch with invalid events', () => {
    it('is rejected whole with per-event detail; nothing is counted; the corrected batch is counted exactly', async () => {
      const before = await streamMessages();
      const bad = [
        ev('m0', 'mixed', 10),
        { specversion: '1.0', id: 'm1', source: 'test', type: 'llm', time: at(1), data: { tokens: 20 } },
        ev('m2', 'mixed', 30),
        { ...ev('m3', 'mixed', 40), data: 'tokens=40' },
        { ...ev('m4', 'mixed', 50), time: 'yesterday' },
        { ...ev('m5', 'mixed', 60), specversion: '0.3' },
        42,
        { ...ev('m7', 'mixed', 70), subject: '' },
        { ...ev('m8', 'mixed', 80), type: 7 },
      ];
      const r = await c.ingest(bad);
      expect(r.statusCode).toBe(400);
      const body = r.json() as { code: string; message: string; errors: { index: number; id?: string; field: string; reason: string }[] };
      expect(body.code).toBe('INGEST_INVALID_EVENTS');
      expect(body.message).toMatch(/^7 of 9 events are invalid; nothing was stored\. .*event 1 \(id "m1"\): subject: subject is required; .*; and 4 more/);
      expect(body.errors).toEqual([
        { index: 1, id: 'm1', field: 'subject', reason: 'subject is required' },
        { index: 3, id: 'm3', field: 'data', reason: 'data must be a JSON object' },
        { index: 4, id: 'm4', field: 'time', reason: expect.stringMatching(/^time must be an RFC 3339 timestamp/) },
        { index: 5, id: 'm5', field: 'specversion', reason: 'specversion must be "1.0"' },
        { index: 6, field: '', reason: 'an event must be a JSON object' },
        { index: 7, id: 'm7', field: 'subject', reason: 'subject must not be empty' },
        { index: 8, id: 'm8', field: 'type', reason: 'type must be a string' },
      ]);
      // All or nothing: not even the valid events m0 and m2 reached the log.
      expect(await streamMessages()).toBe(before);
      await drain();
      expect(await total(c, 'tokens', 'mixed')).toBe('0');

      const fixed = [
        ev('m0', 'mixed', 10),
        ev('m1', 'mixed', 20),
        ev('m2', 'mixed', 30),
        ev('m3', 'mixed', 40),
        ev('m4', 'mixed', 50),
        ev('m5', 'mixed', 60),
        ev('m6', 'mixed', 65),
        ev('m7', 'mixed', 70),
        ev('m8', 'mixed', 80),
      ];
      const ok = await c.ingest(fixed);
      expect(ok.statusCode).toBe(202);
      expect(ok.json()).toEqual({ accepted: 9, duplicate: false });
      await eventually(() => total(c, 'calls', 'mixed'), (v) => v === '9');
      expect(await total(c, 'tokens', 'mixed')).toBe('425');
    });

    it('an event time far in the future is rejected naming `time`', async () => {
      const r = await c.ingest([ev('f1', 'future', 1), { ...ev('f2', 'future', 1), time: '2999-01-01T00:00:00Z' }]);
      expect(r.statusCode).toBe(400);
      expect(r.json()).toMatchObject({ code: 'INGEST_INVALID_EVENTS', errors: [{ index: 1, id: 'f2', field: 'time', reason: expect.stringMatching(/in the future/) }] });
      const tooOld = await c.ingest([{ ...ev('f3', 'future', 1), time: '2001-01-01T00:00:00Z' }]);
      expect(tooOld.json()).toMatchObject({ code: 'INGEST_INVALID_EVENTS', errors: [{ index: 0, field: 'time', reason: expect.stringMatching(/in the past/) }] });
    });
  });

  describe('request-level errors', () => {
    it('malformed JSON -> 400 INGEST_MALFORMED_JSON', async () => {
      for (const text of ['{"specversion":"1.0",', '[{"id": 1}', 'not json', "{'id':'single quotes'}", '']) {
        const r = await c.ingest(text);
        expect(r.statusCode, text).toBe(400);
        expect(r.json().code, text).toBe('INGEST_MALFORMED_JSON');
      }
    });

    it('an empty batch -> 400 naming the reason', async () => {
      const r = await c.ingest([]);
      expect(r.statusCode).toBe(400);
      expect(r.json()).toMatchObject({ code: 'REQUEST_INVALID', message: expect.stringMatching(/empty/) });
    });

    it('a body over INGEST_MAX_BODY_BYTES -> 413 INGEST_BODY_TOO_LARGE', async () => {
      const big = Array.from({ length: 40 }, (_, i) => ev(`big-${i}`, 'big', 1, { pad: 'p'.repeat(600) }));
      expect(JSON.stringify(big).length).toBeGreaterThan(MAX_BODY_BYTES);
      const r = await c.ingest(big);
      expect(r.statusCode).toBe(413);
      expect(r.json()).toMatchObject({ code: 'INGEST_BODY_TOO_LARGE', message: expect.stringMatching(/INGEST_MAX_BODY_BYTES/) });
      // Over a real socket, without Content-Length (chunked), the limit holds too.
      const res = await fetch(`${rt.url}/api/v1/events`, {
        method: 'POST',
        headers: { authorization: `Bearer ${rt.adminKey}`, 'content-type': 'application/json' },
        body: new ReadableStream({
          start(ctl) {
            ctl.enqueue(new TextEncoder().encode(JSON.stringify(big)));
            ctl.close();
          },
        }),
        duplex: 'half',
      } as RequestInit);
      expect(res.status).toBe(413);
      expect(((await res.json()) as { code: string }).code).toBe('INGEST_BODY_TOO_LARGE');
    });

    it('more than INGEST_MAX_BATCH_EVENTS events -> 413 INGEST_BATCH_TOO_LONG; exactly the maximum is accepted', async () => {
      const batch = (n: number) => Array.from({ length: n }, (_, i) => ev(`long-${i}`, 'long', 1));
      const r = await c.ingest(batch(MAX_BATCH_EVENTS + 1));
      expect(r.statusCode).toBe(413);
      expect(r.json()).toMatchObject({ code: 'INGEST_BATCH_TOO_LONG', message: expect.stringMatching(/at most 50/) });
      const ok = await c.ingest(batch(MAX_BATCH_EVENTS));
      expect(ok.statusCode).toBe(202);
      await eventually(() => total(c, 'tokens', 'long'), (v) => v === String(MAX_BATCH_EVENTS));
    });

    it('a wrong Content-Type -> 415 INGEST_UNSUPPORTED_MEDIA_TYPE', async () => {
      for (const ct of ['text/plain', 'application/xml', 'application/x-www-form-urlencoded']) {
        const r = await c.ingest([ev('ct1', 'content-type', 1)], { 'content-type': ct });
        expect(r.statusCode, ct).toBe(415);
        expect(r.json().code, ct).toBe('INGEST_UNSUPPORTED_MEDIA_TYPE');
      }
    });

    it('CloudEvents content types must match the body shape', async () => {
      const single = await c.ingest([ev('ce1', 'ce-types', 1)], { 'content-type': 'application/cloudevents+json' });
      expect(single.statusCode).toBe(400);
      expect(single.json()).toMatchObject({ code: 'REQUEST_INVALID', message: expect.stringMatching(/cloudevents-batch\+json/) });
      const batch = await c.ingest(ev('ce2', 'ce-types', 1), { 'content-type': 'application/cloudevents-batch+json' });
      expect(batch.statusCode).toBe(400);
      expect(batch.json()).toMatchObject({ code: 'REQUEST_INVALID', message: expect.stringMatching(/array/) });
      // The right shapes are accepted and counted.
      expect((await c.ingest(ev('ce3', 'ce-types', 2), { 'content-type': 'application/cloudevents+json; charset=utf-8' })).statusCode).toBe(202);
      expect((await c.ingest([ev('ce4', 'ce-types', 3)], { 'content-type': 'application/cloudevents-batch+json' })).statusCode).toBe(202);
      await eventually(() => total(c, 'tokens', 'ce-types'), (v) => v === '5');
    });
  });

  describe('hostile strings', () => {
    const entries = Object.entries(HOSTILE);

    it('are stored and queried back byte for byte in id, source, subject, data and group-by values', async () => {
      const batch = entries.map(([name, s], i) => ({
        specversion: '1.0',
        id: s,
        source: s,
        type: 'llm',
        subject: s,
        time: at(2),
        data: { tokens: i + 1, model: s, note: `${name}:${s.slice(0, 200)}`, [s]: s, nested: { deep: [s] } },
      }));
      const r = await c.ingest(batch);
      expect(r.statusCode, r.body).toBe(202);
      await eventually(() => total(c, 'calls', HOSTILE.newlines!), (v) => v === '1');
      await eventually(async () => (await c.query('calls', { groupBy: 'subject', subject: entries.map(([, s]) => s) })).data.length, (n) => n === entries.length);

      for (const [name, s] of entries) {
        const i = entries.findIndex(([n]) => n === name);
        // Query by that subject, grouped by a dimension whose value is the hostile string.
        const q = await c.query('tokens', { subject: s, groupBy: ['model', 'note'] });
        expect(q.data, name).toHaveLength(1);
        expect(q.data[0]!.value, name).toBe(String(i + 1));
        expect(q.data[0]!.subject, name).toBe(s);
        expect(q.data[0]!.groupBy.model, name).toBe(s);
        expect(q.data[0]!.groupBy.note, name).toBe(`${name}:${s.slice(0, 200)}`);
        // Filtering on the hostile group-by value finds exactly that event.
        const f = await c.query('tokens', { 'filterGroupBy[model]': s, groupBy: 'subject' });
        expect(f.data.map((d) => [d.subject, d.value]), name).toEqual([[s, String(i + 1)]]);
      }
      // Grouping by subject returns every hostile subject exactly.
      const bySubject = await c.query('calls', { groupBy: 'subject', subject: entries.map(([, s]) => s) });
      expect(bySubject.data.map((d) => d.subject).sort()).toEqual(entries.map(([, s]) => s).sort());

      // The audit record holds the exact strings.
      const { ch, db } = rt.store!;
      const rs = await ch.query({
        query: `SELECT id, source, subject, type, data FROM ${db}.events_raw WHERE subject IN {subjects:Array(String)} ORDER BY id`,
        query_params: { subjects: entries.map(([, s]) => s) },
        format: 'JSONEachRow',
      });
      const rows = await rs.json<{ id: string; source: string; subject: string; type: string; data: string }>();
      expect(rows).toHaveLength(entries.length);
      for (const row of rows) {
        const s = row.subject;
        expect(HOSTILE).toSatisfy((h: Record<string, string>) => Object.values(h).includes(s));
        expect(row.id).toBe(s);
        expect(row.source).toBe(s);
        const data = JSON.parse(row.data) as Record<string, unknown>;
        expect(data.model).toBe(s);
        expect(data[s]).toBe(s);
        expect(data.nested).toEqual({ deep: [s] });
      }
    });

    it('are matched exactly as event types', async () => {
      for (const [name, s] of entries) await c.createMeter({ slug: `type-${name.toLowerCase()}`, eventType: s, aggregation: 'SUM', valueProperty: '$.n' });
      const batch = entries.flatMap(([, s], i) => [
        ce({ id: `type-${i}-a`, type: s, subject: 'hostile-types', time: at(3), data: { n: i + 1 } }),
        ce({ id: `type-${i}-b`, type: s, subject: 'hostile-types', time: at(3), data: { n: 100 } }),
      ]);
      expect((await c.ingest(batch)).statusCode).toBe(202);
      for (const [name] of entries) {
        const i = entries.findIndex(([n]) => n === name);
        await eventually(() => total(c, `type-${name.toLowerCase()}`, 'hostile-types'), (v) => v === String(i + 101));
      }
    });

    it('257 characters are rejected, naming the field', async () => {
      for (const field of ['id', 'source', 'subject', 'type'] as const) {
        const r = await c.ingest([ev('ok-1', 'too-long', 1), { ...ev(`long-${field}`, 'too-long', 1), [field]: TOO_LONG }]);
        expect(r.statusCode, field).toBe(400);
        const body = r.json() as { code: string; errors: { index: number; id?: string; field: string; reason: string }[] };
        expect(body.code).toBe('INGEST_INVALID_EVENTS');
        expect(body.errors, field).toEqual([
          { index: 1, id: field === 'id' ? TOO_LONG.slice(0, 256) : `long-${field}`, field, reason: `${field} must be at most 256 characters` },
        ]);
      }
      await drain();
      expect(await total(c, 'calls', 'too-long')).toBe('0');
    });

    it('hostile query parameters are data, not SQL', async () => {
      for (const s of Object.values(HOSTILE)) {
        const q = await c.query('tokens', { subject: `${s}-nobody`, groupBy: 'model', 'filterGroupBy[note]': s });
        expect(q.data).toEqual([]);
      }
      const badGroup = await c.get(`/api/v1/meters/tokens/query?groupBy=${encodeURIComponent(HOSTILE.sql!)}`);
      expect(badGroup.statusCode).toBe(400);
      expect(badGroup.json()).toMatchObject({ code: 'QUERY_INVALID' });
      const badSlug = await c.get(`/api/v1/meters/${encodeURIComponent(HOSTILE.sql!)}/query`);
      expect(badSlug.statusCode).toBe(404);
      const recon = await c.get(`/api/v1/reconcile?from=${encodeURIComponent(at(0))}&to=${encodeURIComponent(at(60))}&subject=${encodeURIComponent(HOSTILE.sqlEscaped!)}`);
      expect(recon.statusCode).toBe(200);
    });

    it('the database still works afterwards', async () => {
      const { ch, db } = rt.store!;
      const rs = await ch.query({ query: `SELECT name FROM system.tables WHERE database = {db:String} ORDER BY name`, query_params: { db }, format: 'JSONEachRow' });
      const tables = (await rs.json<{ name: string }>()).map((r) => r.name);
      expect(tables).toEqual(expect.arrayContaining(['events_raw', 'event_keys', 'meter_values', 'meter_usage_1m_v2', 'meter_usage_1h_v2', 'meter_usage_1d_v2']));
      expect((await c.ingest([ev('after-1', 'after-hostile', '1.5'), ev('after-2', 'after-hostile', '2.25')])).statusCode).toBe(202);
      await eventually(() => total(c, 'tokens', 'after-hostile'), (v) => v === '3.75');
    });
  });

  describe('dead letters', () => {
    type DeadLetterList = { total: number; items: { seq: number; reason: string; event: string; streamSeq: number; index: number }[] };
    const deadLetters = async () => (await c.get('/api/v1/dead-letters')).json() as DeadLetterList;

    it('events published straight to NATS: the valid one is counted, the invalid ones are parked with their reason', async () => {
      await c.createMeter({ slug: 'dl-usage', eventType: 'dl', aggregation: 'SUM', valueProperty: '$.tokens' });
      const batch = [
        ce({ id: 'dl1', type: 'dl', subject: 'dl-subject', time: at(4), data: { tokens: 5 } }),
        { specversion: '1.0', id: 'dl2', source: 'test', type: 'dl', time: at(4), data: { tokens: 6 } },
      ];
      await rt.nats.js.publish(rt.nats.eventSubject('direct'), JSON.stringify(batch));
      await rt.nats.js.publish(rt.nats.eventSubject('direct'), 'this is {not JSON');
      await eventually(() => total(c, 'dl-usage', 'dl-subject'), (v) => v === '5');
      const list = await eventually(deadLetters, (l) => l.items.length >= 2);
      const missingSubject = list.items.find((d) => d.event.includes('"dl2"'));
      // The index points into the partition message the router wrote (its stream sequence is `streamSeq`).
      expect(missingSubject).toMatchObject({ reason: 'subject: subject is required', index: expect.any(Number) });
      const notJson = list.items.find((d) => d.event === 'this is {not JSON');
      expect(notJson?.reason).toMatch(/^malformed JSON/);
    });

    it('an event a meter cannot count is parked naming the meter and path, and counted exactly once after a fix and a redrive', async () => {
      const r = await c.ingest([ce({ id: 'dl3', type: 'dl', subject: 'dl-subject', time: at(5), data: { units: 7 } })]);
      expect(r.statusCode).toBe(202);
      const parked = (await eventually(deadLetters, (l) => l.items.some((d) => d.event.includes('"dl3"')))).items.find((d) => d.event.includes('"dl3"'))!;
      expect(parked.reason).toBe('meter "dl-usage": data.tokens is missing');
      expect(await total(c, 'dl-usage', 'dl-subject')).toBe('5');

      // Fix the meter: delete it and re-create it as a meter that can count every "dl" event.
      expect((await c.del('/api/v1/meters/dl-usage')).statusCode).toBe(204);
      await c.createMeter({ slug: 'dl-usage', eventType: 'dl', aggregation: 'COUNT' });
      // The new meter is backfilled from the stored event dl1.
      await eventually(() => total(c, 'dl-usage', 'dl-subject'), (v) => v === '1');

      const redrive = await c.post(`/api/v1/dead-letters/${parked.seq}/redrive`);
      expect(redrive.statusCode, redrive.body).toBe(202);
      expect(redrive.json()).toEqual({ streamSeq: expect.any(Number) });
      await eventually(() => total(c, 'dl-usage', 'dl-subject'), (v) => v === '2');
      expect((await deadLetters()).items.map((d) => d.seq)).not.toContain(parked.seq);

      // A second redrive of the same dead letter finds nothing; the event stays counted once.
      const again = await c.post(`/api/v1/dead-letters/${parked.seq}/redrive`);
      expect(again.statusCode).toBe(404);
      expect(again.json().code).toBe('DEADLETTER_NOT_FOUND');
      await drain();
      expect(await total(c, 'dl-usage', 'dl-subject')).toBe('2');
      const { ch, db } = rt.store!;
      const rs = await ch.query({ query: `SELECT id FROM ${db}.events_raw WHERE type = 'dl' ORDER BY id`, format: 'JSONEachRow' });
      expect((await rs.json<{ id: string }>()).map((x) => x.id)).toEqual(['dl1', 'dl3']);
    });
  });

  it('after all of it, reconciliation finds rollups equal to the raw events', async () => {
    const from = new Date(t0 - DAY).toISOString();
    const to = new Date(Date.now() + DAY).toISOString();
    const r = await c.get(`/api/v1/reconcile?from=${encodeURIComponent(from)}&to=${encodeURIComponent(to)}`);
    expect(r.statusCode).toBe(200);
    const body = r.json() as { ok: boolean; meters: { meter: string; ok: boolean; values: { count: string } }[] };
    expect(body.meters.filter((m) => !m.ok)).toEqual([]);
    expect(body.ok).toBe(true);
    expect(body.meters.find((m) => m.meter === 'calls')?.values.count).not.toBe('0');
  });
});
