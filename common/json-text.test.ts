import { isLosslessNumber, parse as losslessParse, stringify as losslessStringify } from 'lossless-json';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { decodeUtf8Escaped, decodeUtf8Strict, invalidUtf8Offset, MAX_EXACT_DEPTH, parseExact, scanJson, Utf8Error } from './json-text.ts';
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

describe('parseExact on deep nesting', () => {
  it('reports each element\'s depth', () => {
    expect(scanJson('[1,[],{"a":[{}]},"[[["]').depth).toEqual([0, 1, 3, 0]);
  });

  it('never overflows the stack: a 100,000-level element with inexact numbers keeps JSON.parse\'s value', () => {
    const deep = `${'{"a":'.repeat(100_000)}1.50${'}'.repeat(100_000)}`;
    const r = parseExact(`[{"v":1.50},${deep}]`);
    expect(r.lossless).toEqual([true, false]);
    expect(String((r.items[0] as { v: unknown }).v)).toBe('1.50');
    expect(scanJson(deep).depth).toEqual([100_000]);
  });

  it(`parses exactly up to ${MAX_EXACT_DEPTH} levels`, () => {
    const at = (n: number) => parseExact(`${'{"a":'.repeat(n)}1.50${'}'.repeat(n)}`).lossless[0];
    expect(at(MAX_EXACT_DEPTH)).toBe(true);
    expect(at(MAX_EXACT_DEPTH + 1)).toBe(false);
  });
});

describe('UTF-8', () => {
  const FATAL = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
  const bytes = (...xs: number[]) => Uint8Array.from(xs);

  it('decodes valid UTF-8 exactly, keeping a byte order mark', () => {
    const text = '\ufeff{"id":"ü日🚀"}';
    expect(decodeUtf8Strict(new TextEncoder().encode(text))).toBe(text);
  });

  it('throws a Utf8Error naming the first bad byte and its offset, never replacing it', () => {
    const cases: [Uint8Array, number][] = [
      [bytes(0x61, 0xff), 1],
      [bytes(0x61, 0xfe), 1],
      [bytes(0x61, 0xed, 0xa0, 0xbd), 1], // a surrogate (CESU-8)
      [bytes(0xc0, 0xaf), 0], // overlong "/"
      [bytes(0xe2, 0x82), 0], // truncated
      [bytes(0xf4, 0x90, 0x80, 0x80), 0], // above U+10FFFF
      [bytes(0x22, 0xc3, 0xa9, 0x80), 3], // a stray continuation byte after é
    ];
    for (const [b, offset] of cases) {
      expect(() => decodeUtf8Strict(b)).toThrow(Utf8Error);
      expect(() => decodeUtf8Strict(b)).toThrow(`not valid UTF-8 (byte 0x${b[offset]!.toString(16)} at offset ${offset})`);
      expect(invalidUtf8Offset(b)).toBe(offset);
    }
  });

  it('agrees with the WHATWG decoder on random bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 24 }), fc.string({ unit: 'binary', maxLength: 8 }), (raw, s) => {
        const b = Uint8Array.from([...new TextEncoder().encode(s), ...raw]);
        let valid = true;
        try {
          FATAL.decode(b);
        } catch {
          valid = false;
        }
        const offset = invalidUtf8Offset(b);
        expect(offset === -1).toBe(valid);
        if (!valid) {
          // Everything before the offset is valid; the text up to the end of the next sequence is not.
          expect(() => FATAL.decode(b.subarray(0, offset))).not.toThrow();
          expect(decodeUtf8Escaped(b).startsWith(FATAL.decode(b.subarray(0, offset)) + String.fromCharCode(0xdc00 + b[offset]!))).toBe(true);
        } else {
          expect(decodeUtf8Escaped(b)).toBe(FATAL.decode(b));
        }
      }),
      { numRuns: 5_000 },
    );
  });

  it('the escaped text keeps each bad byte as U+DC00 + byte', () => {
    expect(decodeUtf8Escaped(bytes(0x61, 0xff, 0x62, 0xe2, 0x82, 0xac, 0xe2, 0x82))).toBe('a\udcffb€\udce2\udc82');
  });
});
