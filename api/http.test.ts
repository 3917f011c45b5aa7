import { describe, expect, it } from 'vitest';
import { csvCell, jsonChunks, monthParam } from './http.ts';

describe('jsonChunks', () => {
  const invoice = (i: number) => ({ id: `inv_${i}`, total: '10.00', lines: [{ id: `l${i}`, amount: '10.00', meter: undefined, breakdown: [{ units: '1' }] }], note: 'quote " and \u2028 é' });
  const cases: [string, Record<string, unknown>][] = [
    ['empty object', {}],
    ['empty arrays', { invoices: [], skipped: [] }],
    ['a close answer', { invoices: Array.from({ length: 50 }, (_, i) => invoice(i)), skipped: [{ subscription: 's', reason: 'no billing period starts in 2026-01' }] }],
    ['scalars, nested objects, undefined and null', { a: 1, b: undefined, c: null, d: { e: [1, undefined] }, f: 'x', g: [undefined, null, () => 1] }],
    ['only an undefined first key', { a: undefined, b: [1] }],
  ];
  it.each(cases)('gives the bytes of JSON.stringify: %s', (_, value) => {
    expect([...jsonChunks(value)].join('')).toBe(JSON.stringify(value));
    // Small chunks: the same text, cut between array elements.
    const small = [...jsonChunks(value, 64)];
    expect(small.join('')).toBe(JSON.stringify(value));
  });

  it('cuts a large array into pieces of about the chunk size', () => {
    const value = { invoices: Array.from({ length: 2_000 }, (_, i) => invoice(i)) };
    const chunks = [...jsonChunks(value, 10_000)];
    expect(chunks.length).toBeGreaterThan(10);
    expect(Math.max(...chunks.map((c) => c.length))).toBeLessThan(10_000 + 500);
    expect(chunks.join('')).toBe(JSON.stringify(value));
  });
});

describe('csvCell: CSV injection (OWASP) and RFC 4180 quoting', () => {
  const cases: [string, string | number | null | undefined, string][] = [
    ['plain text', 'acme', 'acme'],
    ['empty', '', ''],
    ['null', null, ''],
    ['undefined', undefined, ''],
    ['a positive decimal', '12.50', '12.50'],
    ['a negative decimal (a credit) stays a number', '-12.50', '-12.50'],
    ['a negative integer', '-3', '-3'],
    ['a JS number', -0.5, '-0.5'],
    ['an ISO time', '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z'],
    ['= formula', '=1+1', "'=1+1"],
    ['=HYPERLINK with a quote and a comma', '=HYPERLINK("http://x","y")', `"'=HYPERLINK(""http://x"",""y"")"`],
    ['+ formula', '+1+1', "'+1+1"],
    ['- formula that starts like a number', "-1+cmd|' /C calc'!A0", "'-1+cmd|' /C calc'!A0"],
    ['- text', '-foo', "'-foo"],
    ['a lone minus', '-', "'-"],
    ['a decimal with an exponent is not a plain number', '-1e5', "'-1e5"],
    ['a signed positive number is text here', '+12.50', "'+12.50"],
    ['@ formula', '@SUM(A1:A9)', "'@SUM(A1:A9)"],
    ['leading tab', '\t=1+1', "'\t=1+1"],
    ['leading carriage return', '\r=1+1', `"'\r=1+1"`],
    ['formula character not at the start', 'a=b', 'a=b'],
    ['comma', 'a,b', '"a,b"'],
    ['quote', 'say "hi"', '"say ""hi"""'],
    ['newline', 'a\nb', '"a\nb"'],
    ['JSON breakdown', '[{"units":"1"}]', '"[{""units"":""1""}]"'],
  ];
  it.each(cases)('%s', (_, input, expected) => {
    expect(csvCell(input)).toBe(expected);
  });
});

describe('monthParam', () => {
  it.each(['2026-01', '2026-10', '2026-12', '1999-07'])('takes %s', (m) => expect(monthParam().safeParse(m).success).toBe(true));
  it.each(['2026-13', '2026-00', '2026-1', '2026-10-01', '202610', ''])('refuses %j, naming the format', (m) => {
    const r = monthParam().safeParse(m);
    expect(r.success).toBe(false);
    expect(r.error?.issues[0]?.message).toContain('YYYY-MM');
  });
});
