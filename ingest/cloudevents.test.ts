import fc from 'fast-check';
import { isLosslessNumber, parse as losslessParse } from 'lossless-json';
import { describe, expect, it } from 'vitest';
import { Utf8Error, decodeUtf8Strict, parseExact } from '../common/json-text.ts';
import { checkBatch, checkEvent, eventKey, invalidUtf8Event, LONE_SURROGATE_REASON, MAX_DATA_DEPTH, MAX_FIELD_LENGTH, type TimeLimits } from './cloudevents.ts';

const MINUTE = 60_000;
const DAY = 86_400_000;
const NOW = Date.parse('2026-01-31T12:00:00Z');
const LIMITS: TimeLimits = { maxFutureMs: 10 * MINUTE, maxPastMs: 60 * DAY };

const valid = {
  specversion: '1.0',
  id: 'evt-1',
  source: 'billing-api',
  type: 'llm.tokens',
  subject: 'customer-1',
  time: '2026-01-31T11:59:00Z',
  data: { tokens: 5, model: 'gpt' },
};

function errorsOf(raw: unknown, receivedAtMs = NOW, limits = LIMITS) {
  const r = checkEvent(raw, receivedAtMs, limits);
  return r.ok ? [] : r.errors;
}

describe('checkEvent accepts', () => {
  it('a complete event and returns its fields with the time in epoch ms', () => {
    expect(checkEvent(valid, NOW, LIMITS)).toEqual({
      ok: true,
      event: { id: 'evt-1', source: 'billing-api', type: 'llm.tokens', subject: 'customer-1', timeMs: NOW - MINUTE, data: { tokens: 5, model: 'gpt' } },
    });
  });

  it.each([[{ time: undefined }], [{ time: null }]])('an event without a time (%j) at the receipt time', (patch) => {
    const r = checkEvent({ ...valid, ...patch }, NOW, LIMITS);
    expect(r.ok && r.event.timeMs).toBe(NOW);
  });

  it.each([[{ data: undefined }], [{ data: null }], [{ data: {} }]])('an event without data (%j) as empty data', (patch) => {
    const r = checkEvent({ ...valid, ...patch }, NOW, LIMITS);
    expect(r.ok && r.event.data).toEqual({});
  });

  it('extension attributes, without copying them into the event', () => {
    const r = checkEvent({ ...valid, traceparent: '00-abc', dataschema: 'https://example.com/s' }, NOW, LIMITS);
    expect(r.ok).toBe(true);
    expect(r.ok && Object.keys(r.event).sort()).toEqual(['data', 'id', 'source', 'subject', 'timeMs', 'type']);
  });

  it.each([['application/json'], ['application/json; charset=utf-8'], ['APPLICATION/JSON'], ['application/cloudevents+json'], ['application/vnd.acme+json'], [null]])(
    'datacontenttype %j',
    (datacontenttype) => {
      expect(errorsOf({ ...valid, datacontenttype })).toEqual([]);
    },
  );

  it('a field of exactly the maximum length', () => {
    expect(errorsOf({ ...valid, id: 'x'.repeat(MAX_FIELD_LENGTH) })).toEqual([]);
  });

  it('numbers in data exactly as written when the processor parses them losslessly', () => {
    const raw = losslessParse(JSON.stringify({ ...valid, data: {} }).replace('"data":{}', '"data":{"tokens":12345678901234567890.123456789}'));
    const r = checkEvent(raw, NOW, LIMITS);
    expect(r.ok).toBe(true);
    const tokens = r.ok ? r.event.data.tokens : undefined;
    expect(isLosslessNumber(tokens)).toBe(true);
    expect((tokens as { value: string }).value).toBe('12345678901234567890.123456789');
  });
});

describe('checkEvent rejects', () => {
  it.each([[null], [[]], [[valid]], ['event'], [42], [true], [undefined]])('%j: not an object', (raw) => {
    expect(errorsOf(raw)).toEqual([{ field: '', reason: 'an event must be a JSON object' }]);
  });

  describe.each(['id', 'source', 'type', 'subject'])('the attribute %s', (field) => {
    it.each<[string, unknown, string]>([
      ['missing', undefined, `${field} is required`],
      ['empty', '', `${field} must not be empty`],
      ['too long', 'x'.repeat(MAX_FIELD_LENGTH + 1), `${field} must be at most 256 characters`],
      ['too long in emoji', '😀'.repeat(MAX_FIELD_LENGTH / 2 + 1), `${field} must be at most 256 characters`],
      ['a number', 42, `${field} must be a string`],
      ['null', null, `${field} must be a string`],
      ['an object', { v: 'x' }, `${field} must be a string`],
      ['an array', ['x'], `${field} must be a string`],
      ['a boolean', true, `${field} must be a string`],
    ])('when %s', (_, value, reason) => {
      const raw: Record<string, unknown> = { ...valid, [field]: value };
      if (value === undefined) delete raw[field];
      expect(errorsOf(raw)).toEqual([{ field, reason }]);
    });
  });

  it.each<[unknown]>([[undefined], ['0.3'], ['1'], [1], [1.0], ['']])('specversion %j', (specversion) => {
    const raw: Record<string, unknown> = { ...valid, specversion };
    if (specversion === undefined) delete raw.specversion;
    expect(errorsOf(raw)).toEqual([{ field: 'specversion', reason: 'specversion must be "1.0"' }]);
  });

  it('data parsed losslessly as a number together with other problems', () => {
    const raw = losslessParse('{"specversion":"1.0","id":"","source":"s","type":"t","subject":"u","data":5}');
    expect(errorsOf(raw)).toEqual([
      { field: 'id', reason: 'id must not be empty' },
      { field: 'data', reason: 'data must be a JSON object' },
    ]);
  });

  it('every problem of an event at once', () => {
    expect(errorsOf({ specversion: '1.0', id: '', source: 7, data: [] })).toEqual([
      { field: 'id', reason: 'id must not be empty' },
      { field: 'source', reason: 'source must be a string' },
      { field: 'type', reason: 'type is required' },
      { field: 'subject', reason: 'subject is required' },
      { field: 'data', reason: 'data must be a JSON object' },
    ]);
  });

  it.each([['text/plain'], ['application/xml'], ['application/jsonx'], ['json'], ['']])('datacontenttype %j', (datacontenttype) => {
    expect(errorsOf({ ...valid, datacontenttype })).toEqual([{ field: 'datacontenttype', reason: 'datacontenttype must be application/json' }]);
  });

  it.each<[unknown]>([['tokens=5'], [5], [true], [[]], [[{ tokens: 5 }]]])('data %j: not an object', (data) => {
    expect(errorsOf({ ...valid, data })).toEqual([{ field: 'data', reason: 'data must be a JSON object' }]);
  });

  it.each([['5'], ['12345678901234567890'], ['"5"'], ['[1,2]'], ['true']])('data %s: not an object, also when parsed losslessly as the processor does', (dataJson) => {
    const raw = losslessParse(JSON.stringify({ ...valid, data: {} }).replace('"data":{}', `"data":${dataJson}`));
    expect(errorsOf(raw)).toEqual([{ field: 'data', reason: 'data must be a JSON object' }]);
  });
});

describe('checkEvent time', () => {
  it.each([
    ['2026-01-31T12:00:00Z', NOW],
    ['2026-01-31T12:00:00z', NOW],
    ['2026-01-31t12:00:00Z', NOW],
    ['2026-01-31 12:00:00Z', NOW],
    ['2026-01-31T12:00:00.5Z', NOW + 500],
    ['2026-01-31T12:00:00.123Z', NOW + 123],
    ['2026-01-31T12:00:00.123456789Z', NOW + 123],
    ['2026-01-31T13:00:00+01:00', NOW],
    ['2026-01-31T17:30:00+05:30', NOW],
    ['2026-01-31T07:00:00-05:00', NOW],
    ['2026-01-31T12:00:00-00:00', NOW],
    ['2026-01-31T12:00:00+00:00', NOW],
  ])('%s is %d', (time, ms) => {
    const r = checkEvent({ ...valid, time }, NOW, LIMITS);
    expect(r.ok && r.event.timeMs).toBe(ms);
  });

  it.each([
    ['2026-01-31'],
    ['2026-01-31T12:00:00'],
    ['2026-01-31T12:00Z'],
    ['2026-01-31T12:00:00.Z'],
    ['2026-01-31T12:00:00.1234567890Z'],
    ['2026-01-31T12:00:00+0100'],
    ['2026-01-31T12:00:00+01'],
    ['2026-01-31T12:00:00 Z'],
    ['26-01-31T12:00:00Z'],
    ['31/01/2026 12:00:00'],
    ['Sat, 31 Jan 2026 12:00:00 GMT'],
    ['1769860800000'],
    ['now'],
    [''],
    [' 2026-01-31T12:00:00Z'],
  ])('%j is not an RFC 3339 timestamp', (time) => {
    expect(errorsOf({ ...valid, time })).toEqual([{ field: 'time', reason: 'time must be an RFC 3339 timestamp such as 2026-01-31T12:00:00Z' }]);
  });

  it.each<[unknown]>([[NOW], [{ seconds: 1 }], [true]])('%j is not a string', (time) => {
    expect(errorsOf({ ...valid, time })).toEqual([{ field: 'time', reason: 'time must be an RFC 3339 string' }]);
  });

  // Each of these has the shape of a timestamp but names no real instant. The receipt time is
  // set a day later so that a date silently rolled over (Feb 30 -> Mar 2) would be in range.
  it.each([
    ['2026-13-01T00:00:00Z'],
    ['2026-00-10T00:00:00Z'],
    ['2026-01-00T00:00:00Z'],
    ['2026-01-32T00:00:00Z'],
    ['2026-02-29T00:00:00Z'],
    ['2026-02-30T00:00:00Z'],
    ['2026-04-31T00:00:00Z'],
    ['2026-01-31T25:00:00Z'],
    ['2026-01-31T24:00:00Z'],
    ['2026-01-31T12:60:00Z'],
    ['2026-01-31T12:00:00+24:00'],
  ])('%s is not a valid date', (time) => {
    const receivedAtMs = Date.parse('2026-03-03T00:00:00Z');
    expect(errorsOf({ ...valid, time }, receivedAtMs)).toEqual([{ field: 'time', reason: 'time is not a valid date' }]);
  });

  it.each([['2024-02-29T00:00:00Z'], ['2000-02-29T23:59:59Z'], ['2026-12-31T23:59:59.999Z'], ['2026-04-30T00:00:00Z']])('%s is a valid date', (time) => {
    const at = Date.parse(time);
    const r = checkEvent({ ...valid, time }, at, LIMITS);
    expect(r.ok && r.event.timeMs).toBe(at);
  });

  it.each([
    [LIMITS.maxFutureMs, true],
    [LIMITS.maxFutureMs + 1, false],
    [-LIMITS.maxPastMs, true],
    [-LIMITS.maxPastMs - 1, false],
    [0, true],
  ])('relative to the receipt time, an offset of %d ms is accepted: %s', (offsetMs, ok) => {
    const time = new Date(NOW + offsetMs).toISOString();
    expect(checkEvent({ ...valid, time }, NOW, LIMITS).ok).toBe(ok);
  });

  it.each<[TimeLimits, number, string]>([
    [LIMITS, 11 * MINUTE, "time is more than 600s in the future; check the producer's clock"],
    [{ maxFutureMs: 0, maxPastMs: DAY }, 1, "time is more than 0s in the future; check the producer's clock"],
    [{ maxFutureMs: 1_500, maxPastMs: DAY }, 2_000, "time is more than 1500ms in the future; check the producer's clock"],
    [LIMITS, -61 * DAY, 'time is more than 60 days in the past (INGEST_MAX_PAST)'],
    [{ maxFutureMs: 0, maxPastMs: 7 * DAY }, -8 * DAY, 'time is more than 7 days in the past (INGEST_MAX_PAST)'],
    [{ maxFutureMs: 0, maxPastMs: 12 * 3_600_000 }, -DAY, 'time is more than 12h in the past (INGEST_MAX_PAST)'],
    [{ maxFutureMs: 0, maxPastMs: 36 * 3_600_000 }, -2 * DAY, 'time is more than 36h in the past (INGEST_MAX_PAST)'],
  ])('with limits %j an offset of %d ms says %j', (limits, offsetMs, reason) => {
    expect(errorsOf({ ...valid, time: new Date(NOW + offsetMs).toISOString() }, NOW, limits)).toEqual([{ field: 'time', reason }]);
  });

  it('accepts a time exactly when it lies within [receipt - maxPast, receipt + maxFuture]', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: -100 * DAY, max: 100 * DAY }),
        fc.nat({ max: DAY }),
        fc.nat({ max: 90 * DAY }),
        (offsetMs, maxFutureMs, maxPastMs) => {
          const time = new Date(NOW + offsetMs).toISOString();
          const ok = offsetMs <= maxFutureMs && offsetMs >= -maxPastMs;
          const r = checkEvent({ ...valid, time }, NOW, { maxFutureMs, maxPastMs });
          expect(r.ok).toBe(ok);
          if (r.ok) expect(r.event.timeMs).toBe(NOW + offsetMs);
          else expect(r.errors).toHaveLength(1);
        },
      ),
    );
  });
});

describe('checkEvent keeps hostile but valid strings unchanged', () => {
  const hostile = [
    'with "double" quotes',
    "it's",
    "'; DROP TABLE events_raw; --",
    "Robert'); DROP TABLE students;--",
    '1 OR 1=1',
    '{meterId:String}',
    '${process.env.HOME}',
    '<script>alert(1)</script>',
    'back\\slash',
    'nul\u0000inside',
    '\u0000',
    'line\nbreak\r\n\ttab',
    'Grüße aus Köln',
    '日本語のテキスト',
    'مرحبا',
    '😀👍🏽👨‍👩‍👧',
    '\u202Eright-to-left override',
    '\uFEFFbom',
    ' ',
    '😀'.repeat(MAX_FIELD_LENGTH / 2),
  ];

  it.each(hostile.map((s) => [s]))('%j in every attribute and in data', (s) => {
    const r = checkEvent({ ...valid, id: s, source: s, type: s, subject: s, data: { [s]: s, nested: { list: [s] } } }, NOW, LIMITS);
    expect(r).toEqual({ ok: true, event: { id: s, source: s, type: s, subject: s, timeMs: NOW - MINUTE, data: { [s]: s, nested: { list: [s] } } } });
  });

  it('any non-empty string of at most 256 UTF-16 units passes unchanged', () => {
    fc.assert(
      fc.property(
        fc.string({ unit: 'binary', minLength: 1, maxLength: MAX_FIELD_LENGTH }).filter((s) => s.length <= MAX_FIELD_LENGTH),
        (s) => {
          const r = checkEvent({ ...valid, id: s, subject: s }, NOW, LIMITS);
          expect(r.ok && [r.event.id, r.event.subject]).toEqual([s, s]);
        },
      ),
    );
  });
});

describe('checkEvent refuses what the store cannot hold', () => {
  const NOT_FINITE = 'the number is out of range: not finite as a double (magnitude beyond 1.8e308)';
  /** `n` objects, one in the other, around `leaf`. */
  const nest = (n: number, leaf: unknown = 1): unknown => {
    let v = leaf;
    for (let i = 0; i < n; i++) v = { a: v };
    return v;
  };

  it.each([['\ud83d'], ['\udc00'], ['x\ude00\ud83d'], ['\ud83d\ud83d\ude00']])('a lone surrogate (%j) in any stored string, naming the field', (lone) => {
    for (const name of ['id', 'source', 'type', 'subject'] as const) {
      expect(errorsOf({ ...valid, [name]: `a${lone}` }), name).toEqual([{ field: name, reason: LONE_SURROGATE_REASON }]);
    }
    expect(errorsOf({ ...valid, data: { tokens: 1, model: `gpt-${lone}` } })).toEqual([{ field: 'data.model', reason: LONE_SURROGATE_REASON }]);
    expect(errorsOf({ ...valid, data: { [`k${lone}`]: 'v' } })).toEqual([{ field: `data.k${lone}`, reason: LONE_SURROGATE_REASON }]);
    expect(errorsOf({ ...valid, data: { list: ['ok', { deep: [lone] }] } })).toEqual([{ field: 'data.list.1.deep.0', reason: LONE_SURROGATE_REASON }]);
  });

  it('names every bad field of an event, at most 10', () => {
    expect(errorsOf({ ...valid, id: 'a\ud800', subject: 'b\udfff', data: { m: '\ud800' } })).toEqual([
      { field: 'id', reason: LONE_SURROGATE_REASON },
      { field: 'subject', reason: LONE_SURROGATE_REASON },
      { field: 'data.m', reason: LONE_SURROGATE_REASON },
    ]);
    expect(errorsOf({ ...valid, data: { list: Array.from({ length: 50 }, () => '\ud800') } })).toHaveLength(10);
  });

  it('accepts surrogate pairs and U+FFFD; a lone surrogate in an extension attribute is not stored and not refused', () => {
    expect(checkEvent({ ...valid, id: '😀\ufffd', data: { '😀': '\ud83d\ude00' } }, NOW, LIMITS).ok).toBe(true);
    expect(checkEvent({ ...valid, traceparent: '\ud800' }, NOW, LIMITS).ok).toBe(true);
  });

  it(`data nested ${MAX_DATA_DEPTH} levels is accepted; one more is refused naming data and the limit`, () => {
    // `data` itself is level 1.
    expect(checkEvent({ ...valid, data: nest(MAX_DATA_DEPTH) as Record<string, unknown> }, NOW, LIMITS).ok).toBe(true);
    const deep = [{ field: 'data', reason: `data is nested more than ${MAX_DATA_DEPTH} levels deep` }];
    expect(errorsOf({ ...valid, data: nest(MAX_DATA_DEPTH + 1) })).toEqual(deep);
    const arrays = (n: number) => {
      let v: unknown = [];
      for (let i = 1; i < n; i++) v = [v];
      return v;
    };
    expect(checkEvent({ ...valid, data: { a: arrays(MAX_DATA_DEPTH - 1) } }, NOW, LIMITS).ok).toBe(true);
    expect(errorsOf({ ...valid, data: { a: arrays(MAX_DATA_DEPTH) } })).toEqual(deep);
  });

  it('100,000 levels in data or in an extension attribute: refused, no stack overflow', () => {
    const text = (attr: string) => `{"specversion":"1.0","id":"x","source":"s","type":"t","subject":"u","${attr}":${'{"a":'.repeat(100_000)}1${'}'.repeat(100_000)}}`;
    expect(errorsOf(JSON.parse(text('data')))).toEqual([{ field: 'data', reason: `data is nested more than ${MAX_DATA_DEPTH} levels deep` }]);
    expect(errorsOf(JSON.parse(text('ext')))).toEqual([{ field: 'ext', reason: `ext is nested more than ${MAX_DATA_DEPTH} levels deep` }]);
    // As the processor parses it (exactly): the same.
    expect(errorsOf(parseExact(text('data').replace('1}', '1.50}')).items[0])).toEqual([{ field: 'data', reason: `data is nested more than ${MAX_DATA_DEPTH} levels deep` }]);
  });

  it('refuses numbers in data that are not finite as doubles, parsed natively or exactly', () => {
    for (const n of ['1e400', '-1e400', '9'.repeat(1000), '1.5e309']) {
      const text = `{"specversion":"1.0","id":"x","source":"s","type":"t","subject":"u","data":{"x":{"big":${n}}}}`;
      expect(errorsOf(JSON.parse(text)), n).toEqual([{ field: 'data.x.big', reason: NOT_FINITE }]);
      const exact = parseExact(text);
      expect(exact.lossless, n).toEqual([true]);
      expect(errorsOf(exact.items[0]), n).toEqual([{ field: 'data.x.big', reason: NOT_FINITE }]);
    }
    for (const n of ['1e-400', `0.${'0'.repeat(998)}1`, '1.7976931348623157e308', '12345678901234567890.123456789']) {
      const exact = parseExact(`{"specversion":"1.0","id":"x","source":"s","type":"t","subject":"u","data":{"n":${n}}}`);
      const r = checkEvent(exact.items[0], NOW, LIMITS);
      expect(r.ok && String(r.event.data.n), n).toBe(n);
    }
  });

  it('a plain object that looks like a lossless number is walked as an object', () => {
    expect(checkEvent({ ...valid, data: { v: { isLosslessNumber: true, value: 'x' } } }, NOW, LIMITS).ok).toBe(true);
  });
});

describe('invalidUtf8Event', () => {
  const bytes = (...parts: (string | number[])[]) => Buffer.concat(parts.map((p) => Buffer.from(p as string)));
  const errorOf = (b: Buffer) => {
    try {
      decodeUtf8Strict(b);
    } catch (err) {
      return invalidUtf8Event(b, err as Utf8Error);
    }
    throw new Error('valid UTF-8');
  };

  it('names the event, its id (bad bytes as U+FFFD) and the field holding the first bad byte', () => {
    const b = bytes('[{"id":"ok","data":{}},{"id":"a', [0xff], '","data":{"m":"x', [0xfe], '"}}]');
    expect(errorOf(b)).toEqual({ count: 2, error: { index: 1, id: 'a\ufffd', field: 'id', reason: `body is not valid UTF-8 (byte 0xff at offset ${b.indexOf(0xff)})` } });
    const inData = bytes('{"id":"ü","data":{"k":["', [0xed, 0xa0, 0xbd], '"]}}');
    expect(errorOf(inData)).toEqual({ count: 1, error: { index: 0, id: 'ü', field: 'data.k.0', reason: `body is not valid UTF-8 (byte 0xed at offset ${inData.indexOf(0xed)})` } });
    const inKey = bytes('{"id":"i","data":{"k', [0xc0, 0xaf], '":1}}');
    expect(errorOf(inKey)?.error.field).toBe('data.k\udcc0\udcaf');
  });

  it('undefined when the bad byte is outside any string', () => {
    expect(errorOf(bytes('[{"id":"a"}]', [0xff]))).toBeUndefined();
    expect(errorOf(bytes('[{"id":"a"}', [0xff], ']'))).toBeUndefined();
  });
});

describe('checkBatch', () => {
  it('returns every valid event and no errors for a valid batch', () => {
    const items = [valid, { ...valid, id: 'evt-2', time: undefined }, { ...valid, id: 'evt-3', data: { tokens: 7 } }];
    const r = checkBatch(items, NOW, LIMITS);
    expect(r.errors).toEqual([]);
    expect(r.events.map((e) => [e.id, e.timeMs])).toEqual([
      ['evt-1', NOW - MINUTE],
      ['evt-2', NOW],
      ['evt-3', NOW - MINUTE],
    ]);
  });

  it('names the index, id and field of every error', () => {
    const items: unknown[] = [
      valid,
      { ...valid, id: 'evt-2', subject: '' },
      'not an event',
      { ...valid, id: 'evt-4', time: '2026-01-31T13:00:00Z', type: 7 },
      { ...valid, id: 42 },
      { ...valid, id: '' },
      { ...valid, id: 'evt-7', data: [] },
      null,
    ];
    const r = checkBatch(items, NOW, LIMITS);
    expect(r.events.map((e) => e.id)).toEqual(['evt-1']);
    expect(r.errors).toEqual([
      { index: 1, id: 'evt-2', field: 'subject', reason: 'subject must not be empty' },
      { index: 2, field: '', reason: 'an event must be a JSON object' },
      { index: 3, id: 'evt-4', field: 'type', reason: 'type must be a string' },
      { index: 4, field: 'id', reason: 'id must be a string' },
      { index: 5, id: '', field: 'id', reason: 'id must not be empty' },
      { index: 6, id: 'evt-7', field: 'data', reason: 'data must be a JSON object' },
      { index: 7, field: '', reason: 'an event must be a JSON object' },
    ]);
  });

  it('reports a time error with the event id', () => {
    const r = checkBatch([{ ...valid, id: 'late', time: '2025-01-01T00:00:00Z' }], NOW, LIMITS);
    expect(r.errors).toEqual([{ index: 0, id: 'late', field: 'time', reason: 'time is more than 60 days in the past (INGEST_MAX_PAST)' }]);
  });

  it('cuts an over-long id in the error to the maximum length', () => {
    const id = 'x'.repeat(10_000);
    const r = checkBatch([{ ...valid, id }], NOW, LIMITS);
    expect(r.errors).toEqual([{ index: 0, id: 'x'.repeat(MAX_FIELD_LENGTH), field: 'id', reason: 'id must be at most 256 characters' }]);
  });

  it('returns nothing for an empty batch', () => {
    expect(checkBatch([], NOW, LIMITS)).toEqual({ events: [], errors: [] });
  });

  it('splits any mix of good and bad events: every good one is returned in order, every bad index reported', () => {
    fc.assert(
      fc.property(fc.array(fc.boolean(), { maxLength: 30 }), (goodness) => {
        const items = goodness.map((good, i) => (good ? { ...valid, id: `e${i}` } : { ...valid, id: `e${i}`, subject: '' }));
        const r = checkBatch(items, NOW, LIMITS);
        expect(r.events.map((e) => e.id)).toEqual(goodness.flatMap((g, i) => (g ? [`e${i}`] : [])));
        expect(r.errors.map((e) => [e.index, e.id])).toEqual(goodness.flatMap((g, i) => (g ? [] : [[i, `e${i}`]])));
      }),
    );
  });
});

describe('eventKey', () => {
  it('is the same for the same source and id', () => {
    expect(eventKey({ source: 'a', id: 'b' })).toBe(eventKey({ ...valid, source: 'a', id: 'b' }));
  });

  it.each([
    [{ source: 'a', id: 'bc' }, { source: 'ab', id: 'c' }],
    [{ source: 'a', id: 'b\u0000c' }, { source: 'a\u0000b', id: 'c' }],
    [{ source: '', id: '\u0000' }, { source: '\u0000', id: '' }],
  ])('tells %j from %j', (x, y) => {
    expect(eventKey(x)).not.toBe(eventKey(y));
  });

  it('differs whenever the source or the id differs', () => {
    const text = fc.string({ unit: fc.constantFrom('a', '\u0000', ':', '1'), maxLength: 3 });
    fc.assert(
      fc.property(text, text, text, text, (s1, i1, s2, i2) => {
        expect(eventKey({ source: s1, id: i1 }) === eventKey({ source: s2, id: i2 })).toBe(s1 === s2 && i1 === i2);
      }),
      { numRuns: 2_000 },
    );
  });
});
