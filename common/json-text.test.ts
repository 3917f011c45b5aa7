import { isLosslessNumber, parse as losslessParse, stringify as losslessStringify } from 'lossless-json';
import { describe, expect, it } from 'vitest';
import { parseExact, scanJson } from './json-text.ts';
import { seededRandom } from './random.ts';

describe('parseExact', () => {
  it('keeps every digit of numbers a double cannot hold, and how a number was written', () => {
    const text = '[{"id":"a","data":{"tokens":12345678901234567890.5}},{"id":"b","data":{"tokens":2,"price":1.50}},{"id":"c","data":{"n":3}}]';
    const r = parseExact(text);
    expect(r.lossless).toEqual([true, true, false]);
    expect(losslessStringify(r.items[0])).toBe('{"id":"a","data":{"tokens":12345678901234567890.5}}');
    expect(String((r.items[1] as { data: { price: unknown } }).data.price)).toBe('1.50');
    expect(r.items[2]).toEqual({ id: 'c', data: { n: 3 } });
    expect(r.texts()).toEqual(['{"id":"a","data":{"tokens":12345678901234567890.5}}', '{"id":"b","data":{"tokens":2,"price":1.50}}', '{"id":"c","data":{"n":3}}']);
  });

  it('treats exponents, -0 and tiny numbers as inexact (JSON.parse would rewrite them)', () => {
    for (const n of ['1e3', '1E+2', '-0', '0.0000001', '1.0', '100000000000000000000000', '0.1000000000000000055511151231257827']) {
      expect(parseExact(`{"v":${n}}`).lossless, n).toEqual([true]);
    }
    for (const n of ['0', '-1', '0.5', '123456.789', '999999999999999', '-0.25']) {
      expect(parseExact(`{"v":${n}}`).lossless, n).toEqual([false]);
    }
  });

  it('is not fooled by brackets, commas, quotes and digits inside strings', () => {
    const text = ' [ {"id":"x,]}\\"\\\\","s":"12345678901234567890"} ,\n"str\\\\" , 5 ,[1,[2]], true ,null] ';
    const r = parseExact(text);
    expect(r.items).toEqual(JSON.parse(text));
    expect(r.texts()).toEqual(['{"id":"x,]}\\"\\\\","s":"12345678901234567890"}', '"str\\\\"', '5', '[1,[2]]', 'true', 'null']);
    expect(r.lossless).toEqual([false, false, false, false, false, false]);
  });

  it('a single value is the one element', () => {
    const r = parseExact(' {"a":[1,2,{"b":"]"}]} ');
    expect(r.isArray).toBe(false);
    expect(r.texts()).toEqual(['{"a":[1,2,{"b":"]"}]}']);
  });

  it('throws on invalid JSON', () => {
    expect(() => parseExact('[{"a":1},')).toThrow(SyntaxError);
  });

  it('agrees with lossless-json on random documents', () => {
    const rnd = seededRandom(7);
    const pick = <T>(xs: T[]) => xs[Math.floor(rnd() * xs.length)]!;
    const numbers = ['0', '-7', '1.5', '1.50', '3e2', '12345678901234567890', '0.1', '-0', '1e-9', '42.000001', '9007199254740993'];
    const strings = ['"a"', '"\\""', '"\\\\"', '"[,]{}"', '"\\u00e9"', '"é"', '""', '"1,2"'];
    const value = (depth: number): string => {
      const r = rnd();
      if (depth > 3 || r < 0.4) return pick([...numbers, ...strings, 'true', 'false', 'null']);
      if (r < 0.7) return `[${Array.from({ length: Math.floor(rnd() * 4) }, () => value(depth + 1)).join(pick([',', ' , ', ',\n']))}]`;
      return `{${Array.from({ length: Math.floor(rnd() * 4) }, (_, i) => `"k${i}"${pick([':', ' : '])}${value(depth + 1)}`).join(',')}}`;
    };
    for (let n = 0; n < 2_000; n++) {
      const text = rnd() < 0.8 ? `[${Array.from({ length: 1 + Math.floor(rnd() * 5) }, () => value(1)).join(pick([',', ' ,\t']))}]` : value(1);
      const r = parseExact(text);
      const want: unknown = losslessParse(text);
      const wantItems = Array.isArray(want) ? want : [want];
      expect(r.items.map((x) => losslessStringify(x)), text).toEqual(wantItems.map((x) => losslessStringify(x)));
      // Elements parsed natively hold no number that lossless-json would read differently.
      r.items.forEach((x, i) => {
        if (!r.lossless[i]) expect(JSON.stringify(x), text).toBe(losslessStringify(wantItems[i]));
      });
      expect(r.texts().map((t) => losslessStringify(losslessParse(t))), text).toEqual(wantItems.map((x) => losslessStringify(x)));
      expect(scanJson(text).starts.length).toBe(wantItems.length);
    }
    expect(isLosslessNumber(parseExact('{"v":1.50}').items[0] && (parseExact('{"v":1.50}').items[0] as { v: unknown }).v)).toBe(true);
  });
});
