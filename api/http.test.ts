import { describe, expect, it } from 'vitest';
import { jsonChunks } from './http.ts';

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
