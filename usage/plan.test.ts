import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Aggregation } from '../meter/index.ts';
import { chooseSource, planUsageQuery, type Source, type UsageQuery, type WindowSize } from './plan.ts';
import { isValidTimeZone, tzOffsetMinutes } from './time-zones.ts';

const MINUTE = 60_000;
const HOUR = 3_600_000;
const DAY = 86_400_000;
const JAN1 = Date.UTC(2026, 0, 1);
const FEB1 = Date.UTC(2026, 1, 1);
const MAR1 = Date.UTC(2026, 2, 1);
const APR1 = Date.UTC(2026, 3, 1);
const JUL1 = Date.UTC(2026, 6, 1);
const AUG1 = Date.UTC(2026, 7, 1);

/** The zone's offset as Intl itself names it ("GMT+05:30"), in minutes: an oracle independent of tzOffsetMinutes. */
function intlOffsetMinutes(tz: string, ms: number): number {
  const name = new Intl.DateTimeFormat('en-US', { timeZone: tz, timeZoneName: 'longOffset' }).formatToParts(new Date(ms)).find((p) => p.type === 'timeZoneName')!.value;
  const m = /^GMT(?:([+-])(\d{2}):(\d{2}))?$/.exec(name);
  if (!m) throw new Error(`unexpected offset name ${name}`);
  return m[1] === undefined ? 0 : (m[1] === '-' ? -1 : 1) * (Number(m[2]) * 60 + Number(m[3]));
}

describe('tzOffsetMinutes', () => {
  it.each<[string, string, number]>([
    ['UTC', '2026-01-15T12:00:00Z', 0],
    ['Etc/UTC', '2026-07-15T12:00:00Z', 0],
    ['Europe/Berlin', '2026-01-15T12:00:00Z', 60],
    ['Europe/Berlin', '2026-07-15T12:00:00Z', 120],
    // Berlin's DST starts 2026-03-29 at 01:00 UTC and ends 2026-10-25 at 01:00 UTC
    ['Europe/Berlin', '2026-03-29T00:59:59.999Z', 60],
    ['Europe/Berlin', '2026-03-29T01:00:00Z', 120],
    ['Europe/Berlin', '2026-10-25T00:59:59Z', 120],
    ['Europe/Berlin', '2026-10-25T01:00:00Z', 60],
    // local midnight (formatted as hour 00, not 24)
    ['Europe/Berlin', '2026-01-01T23:00:00Z', 60],
    ['Europe/Berlin', '2025-12-31T23:00:00.500Z', 60],
    ['Europe/London', '2026-01-15T00:00:00Z', 0],
    ['Europe/London', '2026-07-15T00:00:00Z', 60],
    ['America/New_York', '2026-01-15T12:00:00Z', -300],
    ['America/New_York', '2026-03-08T06:59:59Z', -300],
    ['America/New_York', '2026-03-08T07:00:00Z', -240],
    ['America/New_York', '2026-07-15T03:30:00Z', -240],
    ['Asia/Kolkata', '2026-01-15T12:00:00Z', 330],
    ['Asia/Kolkata', '2026-07-15T20:00:00Z', 330],
    ['Asia/Kathmandu', '2026-01-15T12:00:00Z', 345],
    ['Australia/Adelaide', '2026-01-15T12:00:00Z', 630],
    ['Australia/Adelaide', '2026-07-15T12:00:00Z', 570],
    ['Pacific/Chatham', '2026-01-15T12:00:00Z', 825],
    ['Pacific/Kiritimati', '2026-01-15T12:00:00Z', 840],
    ['Pacific/Pago_Pago', '2026-01-15T12:00:00Z', -660],
  ])('%s at %s is %d minutes', (tz, at, minutes) => {
    expect(tzOffsetMinutes(tz, Date.parse(at))).toBe(minutes);
  });

  it('agrees with the offset Intl names, in any zone at any time', () => {
    const zones = ['UTC', 'Europe/Berlin', 'Europe/London', 'America/New_York', 'America/St_Johns', 'Asia/Kolkata', 'Asia/Kathmandu', 'Australia/Adelaide', 'Australia/Lord_Howe', 'Pacific/Chatham'];
    fc.assert(
      fc.property(fc.constantFrom(...zones), fc.integer({ min: Date.UTC(1990, 0, 1), max: Date.UTC(2060, 0, 1) }), (tz, ms) => {
        expect(tzOffsetMinutes(tz, ms)).toBe(intlOffsetMinutes(tz, ms));
      }),
      { numRuns: 500 },
    );
  });
});

describe('isValidTimeZone', () => {
  it.each([['UTC'], ['Etc/UTC'], ['Europe/Berlin'], ['Asia/Kolkata'], ['America/Argentina/Buenos_Aires']])('%s is valid', (tz) => {
    expect(isValidTimeZone(tz)).toBe(true);
  });

  it.each([[''], ['Mars/Olympus'], ['+05:30'], ["UTC'; DROP TABLE x; --"], ['Europe/Berlin ']])('%j is not', (tz) => {
    expect(isValidTimeZone(tz)).toBe(false);
  });
});

describe('chooseSource', () => {
  it.each<[string, number, number, WindowSize | undefined, string, Source]>([
    // day-aligned ranges
    ['whole days, no windows', JAN1, FEB1, undefined, 'UTC', 'meter_usage_1d_v2'],
    ['whole days, no windows, any zone', JAN1, FEB1, undefined, 'Asia/Kolkata', 'meter_usage_1d_v2'],
    ['DAY in UTC', JAN1, FEB1, 'DAY', 'UTC', 'meter_usage_1d_v2'],
    ['DAY in Etc/UTC', JAN1, FEB1, 'DAY', 'Etc/UTC', 'meter_usage_1d_v2'],
    ['DAY in GMT', JAN1, FEB1, 'DAY', 'GMT', 'meter_usage_1d_v2'],
    ['DAY in Europe/Berlin', JAN1, FEB1, 'DAY', 'Europe/Berlin', 'meter_usage_1h_v2'],
    ['DAY in America/New_York', JAN1, FEB1, 'DAY', 'America/New_York', 'meter_usage_1h_v2'],
    ['DAY in Asia/Kolkata (+05:30)', JAN1, FEB1, 'DAY', 'Asia/Kolkata', 'meter_usage_1m_v2'],
    ['DAY in Asia/Kathmandu (+05:45)', JAN1, FEB1, 'DAY', 'Asia/Kathmandu', 'meter_usage_1m_v2'],
    ['DAY in Europe/London in winter (UTC+0)', JAN1, FEB1, 'DAY', 'Europe/London', 'meter_usage_1d_v2'],
    ['DAY in Europe/London across the start of DST', MAR1, APR1, 'DAY', 'Europe/London', 'meter_usage_1h_v2'],
    ['DAY in Europe/London in summer', JUL1, AUG1, 'DAY', 'Europe/London', 'meter_usage_1h_v2'],
    ['DAY in Australia/Adelaide (+10:30)', JAN1, FEB1, 'DAY', 'Australia/Adelaide', 'meter_usage_1m_v2'],
    ['HOUR in UTC', JAN1, FEB1, 'HOUR', 'UTC', 'meter_usage_1h_v2'],
    ['HOUR in Europe/Berlin', JAN1, FEB1, 'HOUR', 'Europe/Berlin', 'meter_usage_1h_v2'],
    ['HOUR in Asia/Kolkata', JAN1, FEB1, 'HOUR', 'Asia/Kolkata', 'meter_usage_1m_v2'],
    ['MINUTE in UTC', JAN1, FEB1, 'MINUTE', 'UTC', 'meter_usage_1m_v2'],
    ['MINUTE in Asia/Kolkata', JAN1, FEB1, 'MINUTE', 'Asia/Kolkata', 'meter_usage_1m_v2'],
    // hour-aligned ranges
    ['whole hours, no windows', JAN1 + HOUR, FEB1, undefined, 'UTC', 'meter_usage_1h_v2'],
    ['whole hours, no windows, Asia/Kolkata', JAN1 + HOUR, FEB1 - 3 * HOUR, undefined, 'Asia/Kolkata', 'meter_usage_1h_v2'],
    ['DAY in UTC from an hour', JAN1 + HOUR, FEB1, 'DAY', 'UTC', 'meter_usage_1h_v2'],
    ['DAY in UTC to an hour', JAN1, FEB1 + 5 * HOUR, 'DAY', 'UTC', 'meter_usage_1h_v2'],
    ['DAY in Asia/Kolkata from an hour', JAN1 + HOUR, FEB1, 'DAY', 'Asia/Kolkata', 'meter_usage_1m_v2'],
    ['HOUR in UTC from an hour', JAN1 + HOUR, JAN1 + 5 * HOUR, 'HOUR', 'UTC', 'meter_usage_1h_v2'],
    // minute-aligned ranges
    ['from a minute', JAN1 + MINUTE, FEB1, undefined, 'UTC', 'meter_usage_1m_v2'],
    ['DAY in UTC from a minute', JAN1 + 30 * MINUTE, FEB1, 'DAY', 'UTC', 'meter_usage_1m_v2'],
    ['to a minute', JAN1, JAN1 + 90 * MINUTE, 'HOUR', 'UTC', 'meter_usage_1m_v2'],
    ['Kolkata midnight to midnight', JAN1 - 330 * MINUTE, FEB1 - 330 * MINUTE, 'DAY', 'Asia/Kolkata', 'meter_usage_1m_v2'],
    // unaligned ranges
    ['from a second', JAN1 + 1_000, FEB1, undefined, 'UTC', 'meter_values'],
    ['from a millisecond', JAN1 + 1, FEB1, 'DAY', 'UTC', 'meter_values'],
    ['to a second', JAN1, FEB1 + 1_000, 'DAY', 'UTC', 'meter_values'],
    ['to a millisecond', JAN1, FEB1 - 1, 'MINUTE', 'UTC', 'meter_values'],
  ])('%s reads %5$s', (_, fromMs, toMs, windowSize, timeZone, source) => {
    expect(chooseSource({ fromMs, toMs, windowSize, timeZone })).toBe(source);
  });

  it('picks a rollup only if the range and every window boundary fall on its granularity', () => {
    const zones = ['UTC', 'Europe/Berlin', 'Europe/London', 'America/New_York', 'Asia/Kolkata', 'Asia/Kathmandu'];
    const unit = fc.constantFrom(1, 1_000, MINUTE, HOUR, DAY);
    fc.assert(
      fc.property(
        fc.integer({ min: Date.UTC(2020, 0, 1) / DAY, max: Date.UTC(2030, 0, 1) / DAY }),
        unit,
        fc.nat({ max: 100 }),
        unit,
        fc.integer({ min: 1, max: 400 }),
        fc.constantFrom<WindowSize | undefined>(undefined, 'MINUTE', 'HOUR', 'DAY'),
        fc.constantFrom(...zones),
        (day, fromUnit, fromN, spanUnit, spanN, windowSize, timeZone) => {
          const fromMs = day * DAY + fromN * fromUnit;
          const toMs = fromMs + spanN * spanUnit;
          const source = chooseSource({ fromMs, toMs, windowSize, timeZone });
          const granularity = { meter_usage_1d_v2: DAY, meter_usage_1h_v2: HOUR, meter_usage_1m_v2: MINUTE, meter_values: 1 }[source];
          // the range falls on the granularity
          expect(fromMs % granularity).toBe(0);
          expect(toMs % granularity).toBe(0);
          // every window boundary (local midnight / hour / minute) falls on it too
          if (windowSize !== undefined && granularity > 1) {
            const windowMs = { MINUTE, HOUR, DAY }[windowSize];
            if (windowMs < granularity) throw new Error(`${windowSize} windows read from ${source}`);
            for (const at of [fromMs, toMs, (fromMs + toMs) / 2]) expect(Math.abs((tzOffsetMinutes(timeZone, at) * MINUTE) % granularity)).toBe(0);
          }
          // and the choice is never needlessly raw: minute-aligned ranges read a rollup
          if (fromMs % MINUTE === 0 && toMs % MINUTE === 0) expect(source).not.toBe('meter_values');
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('planUsageQuery', () => {
  const base: UsageQuery = {
    meterId: 'meter-1',
    aggregation: 'SUM',
    fromMs: JAN1,
    toMs: FEB1,
    timeZone: 'UTC',
    subjects: [],
    groupBy: [],
    filterGroupBy: {},
  };

  /** Names of the `{name:Type}` placeholders in the SQL. */
  const placeholders = (sql: string) => [...sql.matchAll(/\{(\w+):[^}]+\}/g)].map((m) => m[1]!);

  it('plans a plain total over a rollup', () => {
    const p = planUsageQuery(base, 'meterline');
    expect(p.source).toBe('meter_usage_1d_v2');
    expect(p.params).toEqual({ meterId: 'meter-1', from: JAN1, to: FEB1, tz: 'UTC' });
    expect(p.groupColumns).toEqual([]);
    expect(p.sql).toBe(
      'SELECT toUnixTimestamp(min(window_start)) AS window_start_s, toString(sumMerge(value_sum)) AS total, toString(countMerge(value_count)) AS row_count ' +
        'FROM meterline.meter_usage_1d_v2 WHERE meter_id = {meterId:String} ' +
        "AND window_start >= fromUnixTimestamp64Milli({from:Int64}, 'UTC') AND window_start < fromUnixTimestamp64Milli({to:Int64}, 'UTC')",
    );
  });

  it.each<[Partial<UsageQuery>, Source, string]>([
    [{ windowSize: 'DAY' }, 'meter_usage_1d_v2', 'toStartOfDay(toDateTime(window_start, {tz:String})) AS ws'],
    [{ windowSize: 'DAY', timeZone: 'Europe/Berlin' }, 'meter_usage_1h_v2', 'toStartOfDay(toDateTime(window_start, {tz:String})) AS ws'],
    [{ windowSize: 'DAY', timeZone: 'Asia/Kolkata' }, 'meter_usage_1m_v2', 'toStartOfDay(toDateTime(window_start, {tz:String})) AS ws'],
    [{ windowSize: 'HOUR' }, 'meter_usage_1h_v2', 'toStartOfHour(toDateTime(window_start, {tz:String})) AS ws'],
    [{ windowSize: 'MINUTE' }, 'meter_usage_1m_v2', 'toStartOfMinute(toDateTime(window_start, {tz:String})) AS ws'],
    [{ windowSize: 'DAY', fromMs: JAN1 + 1 }, 'meter_values', 'toStartOfDay(toDateTime(time, {tz:String})) AS ws'],
  ])('windows %j from %s', (patch, source, windowExpr) => {
    const p = planUsageQuery({ ...base, ...patch }, 'meterline');
    expect(p.source).toBe(source);
    expect(p.sql).toContain(`FROM meterline.${source} `);
    expect(p.sql).toContain(windowExpr);
    expect(p.sql).toMatch(/ GROUP BY ws ORDER BY ws$/);
    expect(p.params.tz).toBe(patch.timeZone ?? 'UTC');
  });

  it.each<[Aggregation, string, string]>([
    ['SUM', 'toString(sumMerge(value_sum)) AS total', 'toString(sum(toDecimal256(value, 9))) AS total'],
    ['COUNT', 'toString(countMerge(value_count)) AS total', 'toString(count()) AS total'],
    ['UNIQUE_COUNT', 'toString(uniqExactMerge(value_unique)) AS total', 'toString(uniqExact(value_key)) AS total'],
    ['MIN', 'toString(minMerge(value_min)) AS total', 'toString(min(value)) AS total'],
    ['MAX', 'toString(maxMerge(value_max)) AS total', 'toString(max(value)) AS total'],
    ['AVG', 'toString(sumMerge(value_sum)) AS total', 'toString(sum(toDecimal256(value, 9))) AS total'],
    ['LATEST', 'toString(argMaxMerge(value_latest)) AS total', 'toString(argMax(value, (time, source, id))) AS total'],
  ])('%s totals with %s on a rollup and %s on raw values', (aggregation, rollup, raw) => {
    const r = planUsageQuery({ ...base, aggregation }, 'db');
    expect(r.sql).toContain(rollup);
    expect(r.sql).toContain('toString(countMerge(value_count)) AS row_count');
    const v = planUsageQuery({ ...base, aggregation, fromMs: JAN1 + 1 }, 'db');
    expect(v.source).toBe('meter_values');
    expect(v.sql).toContain(raw);
    expect(v.sql).toContain('toString(count()) AS row_count');
    expect(v.sql).toContain("time >= fromUnixTimestamp64Milli({from:Int64}, 'UTC') AND time < fromUnixTimestamp64Milli({to:Int64}, 'UTC')");
  });

  it('splits by subject and group-by keys through parameters, in the order asked', () => {
    const p = planUsageQuery({ ...base, windowSize: 'DAY', groupBy: ['model', 'subject', 'region'] }, 'meterline');
    expect(p.groupColumns).toEqual(['g_0', 'g_subject', 'g_2']);
    expect(p.params).toMatchObject({ gk0: 'model', gk2: 'region' });
    expect(p.params).not.toHaveProperty('gk1');
    expect(p.sql).toContain('group_by[{gk0:String}] AS g_0, subject AS g_subject, group_by[{gk2:String}] AS g_2');
    expect(p.sql).toMatch(/ GROUP BY ws, g_0, g_subject, g_2 ORDER BY ws, g_0, g_subject, g_2$/);
  });

  it('filters subjects and group-by values through parameters', () => {
    const p = planUsageQuery({ ...base, subjects: ['c-1', 'c-2'], filterGroupBy: { model: ['gpt', 'claude'], region: ['eu'] } }, 'meterline');
    expect(p.params).toMatchObject({ subjects: ['c-1', 'c-2'], fk0: 'model', fv0: ['gpt', 'claude'], fk1: 'region', fv1: ['eu'] });
    expect(p.sql).toContain('AND subject IN {subjects:Array(String)}');
    expect(p.sql).toContain('AND group_by[{fk0:String}] IN {fv0:Array(String)} AND group_by[{fk1:String}] IN {fv1:Array(String)}');
  });

  it('has no subject condition when no subject is asked for', () => {
    const p = planUsageQuery(base, 'meterline');
    expect(p.params).not.toHaveProperty('subjects');
    expect(p.sql).not.toContain('subject');
  });

  const hostile = [
    "'; DROP TABLE meterline.meter_values; --",
    "x') OR 1=1 --",
    '{meterId:String}',
    '{subjects:Array(String)}',
    '`backtick`',
    '"double"',
    'back\\slash',
    'nul\u0000byte',
    'Grüße 日本 😀',
    '\n\r\t',
  ];

  it.each(hostile.map((s) => [s]))('keeps %j out of the SQL text', (s) => {
    const q: UsageQuery = { ...base, meterId: s, windowSize: 'HOUR', subjects: [s, 'c-1'], groupBy: ['subject', s], filterGroupBy: { [s]: [s, 'v'] } };
    const p = planUsageQuery(q, 'meterline');
    const noUserValues = planUsageQuery({ ...base, meterId: 'm', windowSize: 'HOUR', subjects: ['a', 'b'], groupBy: ['subject', 'k'], filterGroupBy: { k: ['a', 'b'] } }, 'meterline');
    // the SQL does not depend on the values at all, only on their count and kind
    expect(p.sql).toBe(noUserValues.sql);
    expect(Object.values(p.params)).toEqual(expect.arrayContaining([s, [s, 'c-1'], [s, 'v']]));
  });

  it('never puts a user-supplied value into the SQL, and every placeholder has its parameter', () => {
    const MARK = 'Zq7';
    const userText = fc.string({ unit: 'binary', maxLength: 20 }).map((s) => `${MARK}${s}`);
    fc.assert(
      fc.property(
        userText,
        fc.array(userText, { maxLength: 4 }),
        fc.array(fc.oneof(userText, fc.constant('subject')), { maxLength: 4 }),
        fc.dictionary(userText, fc.array(userText, { minLength: 1, maxLength: 3 }), { maxKeys: 3 }),
        fc.constantFrom<Aggregation>('SUM', 'COUNT', 'UNIQUE_COUNT', 'MIN', 'MAX', 'AVG', 'LATEST'),
        fc.constantFrom<WindowSize | undefined>(undefined, 'MINUTE', 'HOUR', 'DAY'),
        fc.constantFrom('UTC', 'Europe/Berlin', 'Asia/Kolkata'),
        fc.constantFrom(JAN1, JAN1 + HOUR, JAN1 + MINUTE, JAN1 + 1),
        (meterId, subjects, groupBy, filterGroupBy, aggregation, windowSize, timeZone, fromMs) => {
          const p = planUsageQuery({ meterId, aggregation, fromMs, toMs: FEB1, windowSize, timeZone, subjects, groupBy, filterGroupBy }, 'meterline');
          expect(p.sql).not.toContain(MARK);
          expect(p.sql).not.toContain(timeZone === 'UTC' ? '{tz:UTC}' : timeZone);
          const names = new Set(placeholders(p.sql));
          expect([...names].every((n) => n in p.params)).toBe(true);
          // every parameter is used (the zone only when there are windows to cut)
          expect(Object.keys(p.params).filter((k) => !names.has(k))).toEqual(windowSize ? [] : ['tz']);
          // and every user value is in the parameters
          const paramText = JSON.stringify(p.params);
          for (const v of [meterId, ...subjects, ...groupBy.filter((g) => g !== 'subject'), ...Object.keys(filterGroupBy), ...Object.values(filterGroupBy).flat()]) {
            expect(paramText).toContain(JSON.stringify(v));
          }
          expect(p.groupColumns).toHaveLength(groupBy.length);
        },
      ),
    );
  });
});
