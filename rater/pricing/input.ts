/**
 * Rating input checks and the text formats of per-event values and per-dimension usage (what the
 * CLI reads from files). Numbers in those files are read exactly (lossless-json): `12.5` stays
 * "12.5", never a float.
 */
import { parse as losslessParse } from 'lossless-json';
import { toDecimal, type Dec } from './decimal.ts';
import { PricingError } from './errors.ts';
import type { RateInput } from './types.ts';

/** A non-negative decimal from a rating input, or RATE_INPUT_INVALID naming `path`. */
export function inputDecimal(value: unknown, path: string): Dec {
  const d = typeof value === 'string' ? toDecimal(value) : undefined;
  if (!d) throw new PricingError('RATE_INPUT_INVALID', 'invalid rating input', [{ path, message: `must be a decimal string such as "1500" or "12.5" (got ${JSON.stringify(value)})` }]);
  if (d.isNegative()) throw new PricingError('RATE_INPUT_INVALID', 'invalid rating input', [{ path, message: `must not be negative (got ${String(value)})` }]);
  return d;
}

function parseJsonExact(text: string, what: string): unknown {
  try {
    return losslessParse(text, undefined, (digits) => digits);
  } catch (err) {
    throw new PricingError('RATE_INPUT_INVALID', `${what} is not valid JSON: ${err instanceof Error ? err.message : String(err)}`);
  }
}

function decimalStrings(list: unknown[], path: string): string[] {
  return list.map((v, i) => {
    inputDecimal(v, `${path}[${i}]`);
    return v as string;
  });
}

/** Per-event values: a JSON array (`["12.5", 3]`) or one value per line (blank lines and `#` comments skipped). */
export function parseValuesText(text: string): string[] {
  const trimmed = text.trim();
  if (trimmed.startsWith('[')) {
    const json = parseJsonExact(trimmed, 'values');
    if (!Array.isArray(json)) throw new PricingError('RATE_INPUT_INVALID', 'values must be a JSON array of decimals');
    return decimalStrings(json, 'values');
  }
  const lines = trimmed.split(/\r?\n/).map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'));
  return decimalStrings(lines, 'values');
}

/**
 * Usage per dimension value: a JSON object mapping each value to its quantity, either directly
 * (`{ "gpt-4o": "1200" }`) or as `{ "quantity": "1200", "values": [...] }`.
 */
export function parseByDimensionText(text: string): NonNullable<RateInput['byDimension']> {
  const json = parseJsonExact(text, 'by-dimension');
  if (json === null || typeof json !== 'object' || Array.isArray(json)) throw new PricingError('RATE_INPUT_INVALID', 'by-dimension must be a JSON object: { "<value>": "<quantity>" | { "quantity": "...", "values": [...] } }');
  const out: NonNullable<RateInput['byDimension']> = {};
  for (const [value, usage] of Object.entries(json)) {
    if (typeof usage === 'string') {
      inputDecimal(usage, value);
      out[value] = { quantity: usage };
    } else if (usage !== null && typeof usage === 'object' && !Array.isArray(usage)) {
      const u = usage as { quantity?: unknown; values?: unknown };
      const quantity = u.quantity ?? '0';
      inputDecimal(quantity, `${value}.quantity`);
      if (u.values !== undefined && !Array.isArray(u.values)) throw new PricingError('RATE_INPUT_INVALID', 'invalid rating input', [{ path: `${value}.values`, message: 'must be an array' }]);
      out[value] = { quantity: quantity as string, ...(Array.isArray(u.values) ? { values: decimalStrings(u.values, `${value}.values`) } : {}) };
    } else {
      throw new PricingError('RATE_INPUT_INVALID', 'invalid rating input', [{ path: value, message: 'must be a quantity or { "quantity": ..., "values": [...] }' }]);
    }
  }
  return out;
}
