import { Decimal } from 'decimal.js';
import fc from 'fast-check';
import { parse as losslessParse } from 'lossless-json';
import { describe, expect, it } from 'vitest';
import { Aggregations, exactDecimal, MeterInputSchema, meterValues, scalarText, type Meter, type MeterValue } from './meters.ts';

const TYPE = 'llm.tokens';

/** A meter as the catalog holds it; the input goes through MeterInputSchema first, so every test meter is valid. */
function meter(input: Record<string, unknown>): Meter {
  const parsed = MeterInputSchema.parse({ eventType: TYPE, ...input });
  return { ...parsed, id: `id-${parsed.slug}`, createdAt: '2026-01-01T00:00:00.000Z' };
}

/** An event whose data is parsed from JSON text the way the processor parses it (numbers stay exact). */
function event(dataJson: string, type = TYPE) {
  return { type, data: losslessParse(dataJson) as Record<string, unknown> };
}

const sumTokens = meter({ slug: 'tokens', aggregation: 'SUM', valueProperty: '$.tokens' });

describe('MeterInputSchema', () => {
  it.each<[string, Record<string, unknown>]>([
    ['a COUNT meter', { slug: 'requests', aggregation: 'COUNT' }],
    ['a SUM meter', { slug: 'tokens', aggregation: 'SUM', valueProperty: '$.tokens' }],
    ['a UNIQUE_COUNT meter', { slug: 'users', aggregation: 'UNIQUE_COUNT', valueProperty: "$['user id']" }],
    ['a meter with name and description', { slug: 'a_b-1', name: 'Tokens', description: 'LLM tokens', aggregation: 'MAX', valueProperty: '$.usage[0].n' }],
    ['group-by keys', { slug: 'tokens', aggregation: 'SUM', valueProperty: '$.tokens', groupBy: { model: '$.model', region_2: '$.meta.region' } }],
    ['every kind of filter', { slug: 'tokens', aggregation: 'COUNT', filter: { '$.a': { eq: 'x' }, '$.b': { neq: 2 }, '$.c': { in: ['x', 1, true] }, '$.d': { exists: false } } }],
    ['a 63-character slug', { slug: 'a'.repeat(63), aggregation: 'COUNT' }],
    ['a slug starting with a digit', { slug: '1st', aggregation: 'COUNT' }],
  ])('accepts %s', (_, input) => {
    expect(MeterInputSchema.safeParse({ eventType: TYPE, ...input }).success).toBe(true);
  });

  const base = { slug: 'tokens', eventType: TYPE, aggregation: 'SUM', valueProperty: '$.tokens' };
  const SLUG = 'slug must be 1-63 lower-case letters, digits, "-" or "_", starting with a letter or digit';
  it.each<[Record<string, unknown>, (string | number)[], string]>([
    [{ slug: 'Tokens' }, ['slug'], SLUG],
    [{ slug: '' }, ['slug'], SLUG],
    [{ slug: '-tokens' }, ['slug'], SLUG],
    [{ slug: 'a'.repeat(64) }, ['slug'], SLUG],
    [{ slug: 'tok ens' }, ['slug'], SLUG],
    [{ slug: "x'; DROP TABLE meters; --" }, ['slug'], SLUG],
    [{ eventType: '' }, ['eventType'], 'eventType is required'],
    [{ aggregation: 'MEDIAN' }, ['aggregation'], 'aggregation must be one of SUM, COUNT, UNIQUE_COUNT, MIN, MAX, AVG, LATEST'],
    [{ aggregation: 'sum' }, ['aggregation'], 'aggregation must be one of SUM, COUNT, UNIQUE_COUNT, MIN, MAX, AVG, LATEST'],
    [{ aggregation: 'COUNT' }, ['valueProperty'], 'COUNT meters take no valueProperty'],
    [{ valueProperty: undefined }, ['valueProperty'], 'SUM meters need a valueProperty, e.g. $.tokens'],
    [{ aggregation: 'LATEST', valueProperty: undefined }, ['valueProperty'], 'LATEST meters need a valueProperty, e.g. $.tokens'],
    [{ valueProperty: 'tokens' }, ['valueProperty'], '"tokens" must start with "$", e.g. $.tokens'],
    [{ valueProperty: '$.a[x]' }, ['valueProperty'], '"$.a[x]": bad bracket at position 3; use [0] or [\'name\']'],
    [{ groupBy: { 'model-name': '$.m' } }, ['groupBy', 'model-name'], 'groupBy keys must be identifiers such as model or region'],
    [{ groupBy: { subject: '$.customer' } }, ['groupBy'], 'subject is a reserved groupBy key'],
    [{ groupBy: { model: '$' } }, ['groupBy', 'model'], '"$" selects the whole object; name a property, e.g. $.tokens'],
    [{ filter: { '$.r': { eq: 'eu', neq: 'us' } } }, ['filter', '$.r'], 'each filter takes exactly one of eq, neq, in, exists'],
    [{ filter: { '$.r': {} } }, ['filter', '$.r'], 'each filter takes exactly one of eq, neq, in, exists'],
    [{ filter: { '$.r': { like: 'e%' } } }, ['filter', '$.r'], "Unrecognized key(s) in object: 'like'"],
    [{ filter: { region: { eq: 'eu' } } }, ['filter', 'region'], '"region" must start with "$", e.g. $.tokens'],
    [{ filter: { '$.r': { in: 'eu' } } }, ['filter', '$.r', 'in'], 'Expected array, received string'],
    [{ name: 'x'.repeat(201) }, ['name'], 'String must contain at most 200 character(s)'],
    [{ unit: 'tokens' }, [], "Unrecognized key(s) in object: 'unit'"],
  ])('%j fails at %j with %j', (patch, path, message) => {
    const r = MeterInputSchema.safeParse({ ...base, ...patch });
    expect(r.success).toBe(false);
    expect(r.error?.issues.map((i) => ({ path: i.path, message: i.message }))).toContainEqual({ path, message });
  });
});

describe('meterValues aggregations', () => {
  const data = '{"tokens": 12.50, "user": "alice", "n": 3}';

  it.each(['SUM', 'MIN', 'MAX', 'AVG', 'LATEST'] as const)('%s takes the exact value of valueProperty', (aggregation) => {
    const m = meter({ slug: 'm', aggregation, valueProperty: '$.tokens' });
    expect(meterValues(event(data), [m])).toEqual({ ok: true, values: [{ meter_id: 'id-m', value: '12.5', value_key: '', group_by: {} }] });
  });

  it('COUNT counts one per event and reads no value', () => {
    const m = meter({ slug: 'm', aggregation: 'COUNT' });
    expect(meterValues(event('{}'), [m])).toEqual({ ok: true, values: [{ meter_id: 'id-m', value: '1', value_key: '', group_by: {} }] });
  });

  it.each<[string, string]>([
    ['{"user": "alice"}', 'alice'],
    ['{"user": 123.450}', '123.450'],
    ['{"user": 12345678901234567890123}', '12345678901234567890123'],
    ['{"user": true}', 'true'],
    ['{"user": ""}', ''],
    ['{"user": "O\'Brien \\"x\\" 😀"}', 'O\'Brien "x" 😀'],
    ['{"user": ["a", "b"]}', '["a","b"]'],
  ])('UNIQUE_COUNT of %s keys on %j', (json, key) => {
    const m = meter({ slug: 'm', aggregation: 'UNIQUE_COUNT', valueProperty: '$.user' });
    expect(meterValues(event(json), [m])).toEqual({ ok: true, values: [{ meter_id: 'id-m', value: '0', value_key: key, group_by: {} }] });
  });

  it('covers every aggregation', () => {
    // If an aggregation is added, this table (and the tests above) must learn it.
    expect([...Aggregations].sort()).toEqual(['AVG', 'COUNT', 'LATEST', 'MAX', 'MIN', 'SUM', 'UNIQUE_COUNT']);
  });

  it('keeps every digit of a large decimal, which a JS number would round', () => {
    const r = meterValues(event('{"tokens": 12345678901234567890.123456789}'), [sumTokens]);
    expect(r.ok && r.values[0]!.value).toBe('12345678901234567890.123456789');
  });

  it('normalises exponent notation', () => {
    expect(meterValues(event('{"tokens": 1.5e3}'), [sumTokens])).toMatchObject({ ok: true, values: [{ value: '1500' }] });
    expect(meterValues(event('{"tokens": 25E-2}'), [sumTokens])).toMatchObject({ ok: true, values: [{ value: '0.25' }] });
  });

  it('takes a numeric string as a number', () => {
    expect(meterValues(event('{"tokens": "0.001"}'), [sumTokens])).toMatchObject({ ok: true, values: [{ value: '0.001' }] });
  });

  it('skips meters of another event type', () => {
    expect(meterValues(event('{"tokens": 5}', 'other.type'), [sumTokens])).toEqual({ ok: true, values: [] });
    // …even when the event lacks the value
    expect(meterValues(event('{}', 'other.type'), [sumTokens])).toEqual({ ok: true, values: [] });
  });

  it('returns one value per matching meter, in meter order', () => {
    const meters = [
      meter({ slug: 'count', aggregation: 'COUNT' }),
      meter({ slug: 'other', aggregation: 'COUNT', eventType: 'other.type' }),
      sumTokens,
      meter({ slug: 'users', aggregation: 'UNIQUE_COUNT', valueProperty: '$.user' }),
      meter({ slug: 'max-n', aggregation: 'MAX', valueProperty: '$.n' }),
    ];
    const r = meterValues(event(data), meters);
    expect(r.ok && r.values.map((v) => [v.meter_id, v.value, v.value_key])).toEqual([
      ['id-count', '1', ''],
      ['id-tokens', '12.5', ''],
      ['id-users', '0', 'alice'],
      ['id-max-n', '3', ''],
    ]);
  });
});

describe('meterValues failures name the meter and the path', () => {
  it.each<[string, Record<string, unknown>, string]>([
    ['{}', { aggregation: 'SUM', valueProperty: '$.tokens' }, 'meter "m": data.tokens is missing'],
    ['{"usage": {}}', { aggregation: 'AVG', valueProperty: '$.usage.tokens' }, 'meter "m": data.usage.tokens is missing'],
    ['{"usage": []}', { aggregation: 'MIN', valueProperty: '$.usage[0]' }, 'meter "m": data.usage[0] is missing'],
    ['{}', { aggregation: 'MAX', valueProperty: "$['in tokens']" }, "meter \"m\": data['in tokens'] is missing"],
    ['{"tokens": null}', { aggregation: 'SUM', valueProperty: '$.tokens' }, 'meter "m": data.tokens must be a number, got null'],
    ['{"tokens": "abc"}', { aggregation: 'SUM', valueProperty: '$.tokens' }, 'meter "m": data.tokens must be a number, got "abc"'],
    ['{"tokens": ""}', { aggregation: 'SUM', valueProperty: '$.tokens' }, 'meter "m": data.tokens must be a number, got ""'],
    ['{"tokens": true}', { aggregation: 'LATEST', valueProperty: '$.tokens' }, 'meter "m": data.tokens must be a number, got boolean'],
    ['{"tokens": {"n": 1}}', { aggregation: 'SUM', valueProperty: '$.tokens' }, 'meter "m": data.tokens must be a number, got object'],
    ['{"tokens": [1]}', { aggregation: 'SUM', valueProperty: '$.tokens' }, 'meter "m": data.tokens must be a number, got object'],
    ['{"tokens": 0.0000000001}', { aggregation: 'SUM', valueProperty: '$.tokens' }, 'meter "m": data.tokens has more than 9 decimal places (0.0000000001)'],
    ['{"tokens": 1e29}', { aggregation: 'SUM', valueProperty: '$.tokens' }, 'meter "m": data.tokens is too large (at most 29 integer digits)'],
    ['{}', { aggregation: 'UNIQUE_COUNT', valueProperty: '$.user' }, 'meter "m": data.user is missing'],
    ['{"user": null}', { aggregation: 'UNIQUE_COUNT', valueProperty: '$.user' }, 'meter "m": data.user is missing'],
  ])('%s with %j: %s', (json, input, reason) => {
    expect(meterValues(event(json), [meter({ slug: 'm', ...input })])).toEqual({ ok: false, reason });
  });

  it('fails the whole event when any matching meter fails', () => {
    const meters = [meter({ slug: 'count', aggregation: 'COUNT' }), sumTokens, meter({ slug: 'cost', aggregation: 'SUM', valueProperty: '$.cost' })];
    expect(meterValues(event('{"tokens": 5}'), meters)).toEqual({ ok: false, reason: 'meter "cost": data.cost is missing' });
  });

  it('does not fail for a meter whose filter excludes the event', () => {
    const m = meter({ slug: 'm', aggregation: 'SUM', valueProperty: '$.tokens', filter: { '$.kind': { eq: 'billable' } } });
    expect(meterValues(event('{"kind": "free"}'), [m])).toEqual({ ok: true, values: [] });
  });
});

describe('meterValues filters', () => {
  const count = (filter: Record<string, unknown>) => meter({ slug: 'm', aggregation: 'COUNT', filter });
  const matches = (filter: Record<string, unknown>, json: string) => {
    const r = meterValues(event(json), [count(filter)]);
    if (!r.ok) throw new Error(r.reason);
    return r.values.length === 1;
  };

  it.each<[Record<string, unknown>, string, boolean]>([
    [{ '$.region': { eq: 'eu' } }, '{"region": "eu"}', true],
    [{ '$.region': { eq: 'eu' } }, '{"region": "us"}', false],
    [{ '$.region': { eq: 'eu' } }, '{"region": "EU"}', false],
    [{ '$.region': { eq: 'eu' } }, '{}', false],
    [{ '$.tier': { eq: 2 } }, '{"tier": 2}', true],
    [{ '$.tier': { eq: 2 } }, '{"tier": 3}', false],
    [{ '$.big': { eq: '12345678901234567890' } }, '{"big": 12345678901234567890}', true],
    [{ '$.big': { eq: '12345678901234567890' } }, '{"big": 12345678901234567891}', false],
    [{ '$.paid': { eq: true } }, '{"paid": true}', true],
    [{ '$.paid': { eq: true } }, '{"paid": false}', false],
    [{ '$.meta.region': { eq: 'eu' } }, '{"meta": {"region": "eu"}}', true],
    [{ '$.tags[1]': { eq: 'b' } }, '{"tags": ["a", "b"]}', true],
    [{ "$['odd key']": { eq: "'; DROP" } }, '{"odd key": "\'; DROP"}', true],
    [{ '$.region': { neq: 'eu' } }, '{"region": "us"}', true],
    [{ '$.region': { neq: 'eu' } }, '{"region": "eu"}', false],
    [{ '$.region': { neq: 'eu' } }, '{}', true],
    [{ '$.region': { in: ['eu', 'us'] } }, '{"region": "us"}', true],
    [{ '$.region': { in: ['eu', 'us'] } }, '{"region": "ap"}', false],
    [{ '$.tier': { in: [1, 2] } }, '{"tier": 2}', true],
    [{ '$.tier': { in: [1, 2] } }, '{"tier": "2"}', true],
    [{ '$.region': { in: [] } }, '{"region": "eu"}', false],
    [{ '$.region': { exists: true } }, '{"region": "eu"}', true],
    [{ '$.region': { exists: true } }, '{"region": ""}', true],
    [{ '$.region': { exists: true } }, '{"region": 0}', true],
    [{ '$.region': { exists: true } }, '{"region": null}', false],
    [{ '$.region': { exists: true } }, '{}', false],
    [{ '$.region': { exists: false } }, '{}', true],
    [{ '$.region': { exists: false } }, '{"region": null}', true],
    [{ '$.region': { exists: false } }, '{"region": "eu"}', false],
    // several filters must all hold
    [{ '$.region': { eq: 'eu' }, '$.tier': { in: [1, 2] } }, '{"region": "eu", "tier": 1}', true],
    [{ '$.region': { eq: 'eu' }, '$.tier': { in: [1, 2] } }, '{"region": "eu", "tier": 3}', false],
    [{ '$.region': { eq: 'eu' }, '$.tier': { in: [1, 2] } }, '{"region": "us", "tier": 1}', false],
  ])('%j on %s matches: %s', (filter, json, expected) => {
    expect(matches(filter, json)).toBe(expected);
  });
});

describe('meterValues groupBy', () => {
  const grouped = meter({
    slug: 'g',
    aggregation: 'COUNT',
    groupBy: { model: '$.model', tier: '$.tier', region: '$.meta.region', first_tag: '$.tags[0]', spaced: "$['a b']" },
  });

  it.each<[string, Record<string, string>]>([
    [
      '{"model": "gpt-4", "tier": 2, "meta": {"region": "eu"}, "tags": ["x", "y"], "a b": "z"}',
      { model: 'gpt-4', tier: '2', region: 'eu', first_tag: 'x', spaced: 'z' },
    ],
    ['{}', { model: '', tier: '', region: '', first_tag: '', spaced: '' }],
    ['{"model": null, "tier": 1.50, "meta": "flat", "tags": []}', { model: '', tier: '1.50', region: '', first_tag: '', spaced: '' }],
    ['{"model": true, "tier": {"n": "1"}, "tags": [["nested"]]}', { model: 'true', tier: '{"n":"1"}', region: '', first_tag: '["nested"]', spaced: '' }],
    [
      '{"model": "\'; DROP TABLE meter_values; --", "tier": "日本", "a b": "nul\\u0000😀"}',
      { model: "'; DROP TABLE meter_values; --", tier: '日本', region: '', first_tag: '', spaced: 'nul\u0000😀' },
    ],
  ])('from %s', (json, groupBy) => {
    const r = meterValues(event(json), [grouped]);
    expect(r.ok && r.values.map((v: MeterValue) => v.group_by)).toEqual([groupBy]);
  });

  it('is empty for a meter without groupBy', () => {
    const r = meterValues(event('{"tokens": 1, "model": "x"}'), [sumTokens]);
    expect(r.ok && r.values[0]!.group_by).toEqual({});
  });
});

describe('scalarText', () => {
  it.each<[unknown, string]>([
    [undefined, ''],
    [null, ''],
    ['text', 'text'],
    [0, '0'],
    [1.5, '1.5'],
    [false, 'false'],
    [losslessParse('1.50'), '1.50'],
    [losslessParse('1e400'), '1e400'],
    [{ a: 1 }, '{"a":1}'],
    [[1, 'b'], '[1,"b"]'],
  ])('%j is %j', (v, text) => {
    expect(scalarText(v)).toBe(text);
  });
});

describe('exactDecimal', () => {
  it.each<[unknown, string]>([
    [losslessParse('12345678901234567890.123456789'), '12345678901234567890.123456789'],
    [losslessParse('1.5e3'), '1500'],
    [losslessParse('-2.5E-3'), '-0.0025'],
    [losslessParse('0.000000001'), '0.000000001'],
    [losslessParse('99999999999999999999999999999.999999999'), '99999999999999999999999999999.999999999'],
    [losslessParse('-99999999999999999999999999999'), '-99999999999999999999999999999'],
    ['42', '42'],
    [' 7.5 ', '7.5'],
    ['-3.25', '-3.25'],
    ['+4', '4'],
    ['.5', '0.5'],
    ['5.', '5'],
    ['2.50', '2.5'],
    ['007', '7'],
    ['1e3', '1000'],
    ['1E+3', '1000'],
    ['1.5e-3', '0.0015'],
    ['1e28', '10000000000000000000000000000'],
    ['1.0000000000', '1'],
    ['0', '0'],
    ['-0', '0'],
    [0, '0'],
    [0.1, '0.1'],
    [-17, '-17'],
    [1e21, '1000000000000000000000'],
    [1e-7, '0.0000001'],
  ])('%j is %j', (v, value) => {
    expect(exactDecimal(v)).toEqual({ ok: true, value });
  });

  it.each<[unknown, string]>([
    [undefined, 'is missing'],
    [null, 'must be a number, got null'],
    [true, 'must be a number, got boolean'],
    [{}, 'must be a number, got object'],
    [[1], 'must be a number, got object'],
    ['abc', 'must be a number, got "abc"'],
    ['', 'must be a number, got ""'],
    ['   ', 'must be a number, got ""'],
    ['0x10', 'must be a number, got "0x10"'],
    ['1,5', 'must be a number, got "1,5"'],
    ['1_000', 'must be a number, got "1_000"'],
    ['12 tokens', 'must be a number, got "12 tokens"'],
    ['NaN', 'must be a number, got "NaN"'],
    ['Infinity', 'must be a number, got "Infinity"'],
    ['e5', 'must be a number, got "e5"'],
    ['1e', 'must be a number, got "1e"'],
    ['--1', 'must be a number, got "--1"'],
    [NaN, 'must be a number, got "NaN"'],
    [Infinity, 'must be a number, got "Infinity"'],
    ['9'.repeat(50) + 'x', `must be a number, got "${'9'.repeat(40)}"`],
    [losslessParse('0.0000000001'), 'has more than 9 decimal places (0.0000000001)'],
    ['1e-10', 'has more than 9 decimal places (1e-10)'],
    [1e-10, 'has more than 9 decimal places (1e-10)'],
    ['1.1234567891', 'has more than 9 decimal places (1.1234567891)'],
    [losslessParse('1e29'), 'is too large (at most 29 integer digits)'],
    ['1e29', 'is too large (at most 29 integer digits)'],
    ['-1e29', 'is too large (at most 29 integer digits)'],
    ['1' + '0'.repeat(29), 'is too large (at most 29 integer digits)'],
    ['99999999999999999999999999999.9999999999', 'has more than 9 decimal places (99999999999999999999999999999.9999999999)'],
    ['0.' + '1'.repeat(50), `has more than 9 decimal places (0.${'1'.repeat(38)})`],
    [1e300, 'is too large (at most 29 integer digits)'],
  ])('%j is rejected: %s', (v, reason) => {
    expect(exactDecimal(v)).toEqual({ ok: false, reason });
  });

  const decimalText = fc
    .tuple(fc.boolean(), fc.stringMatching(/^(0|[1-9]\d{0,28})$/), fc.stringMatching(/^\d{0,9}$/))
    .map(([neg, int, frac]) => `${neg ? '-' : ''}${int}${frac ? `.${frac}` : ''}`);

  it('keeps the exact value of every decimal within Decimal(38, 9)', () => {
    fc.assert(
      fc.property(decimalText, (text) => {
        const r = exactDecimal(text);
        expect(r.ok).toBe(true);
        if (r.ok) {
          expect(new Decimal(r.value).eq(new Decimal(text))).toBe(true);
          // canonical: no exponent, no leading zeros, no trailing fractional zeros, no "-0"
          expect(r.value).toMatch(/^(0|-?[1-9]\d*)(\.\d*[1-9])?$|^-?0\.\d*[1-9]$/);
        }
        // the same number read losslessly from JSON gives the same text
        expect(exactDecimal(losslessParse(text))).toEqual(r);
      }),
    );
  });

  it('gives the same value for exponent notation as for the plain decimal', () => {
    fc.assert(
      fc.property(decimalText, fc.integer({ min: -12, max: 12 }), (text, exp) => {
        const plain = new Decimal(text).times(new Decimal(10).pow(exp));
        const r = exactDecimal(losslessParse(`${text}e${exp}`));
        const fits = plain.decimalPlaces() <= 9 && plain.abs().lt('1e29');
        expect(r.ok).toBe(fits);
        if (r.ok) expect(r.value).toBe(plain.toFixed());
      }),
    );
  });

  it('sums exactly: adding the values as decimals matches adding the texts', () => {
    fc.assert(
      fc.property(fc.array(decimalText.filter((t) => t.replace(/^-/, '').split('.')[0]!.length <= 20), { maxLength: 20 }), (texts) => {
        const sum = texts.reduce((s, t) => {
          const r = exactDecimal(losslessParse(t));
          if (!r.ok) throw new Error(r.reason);
          return s.plus(r.value);
        }, new Decimal(0));
        expect(sum.eq(texts.reduce((s, t) => s.plus(t), new Decimal(0)))).toBe(true);
      }),
    );
  });
});
