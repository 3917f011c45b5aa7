/**
 * Exact decimal arithmetic for the pricing core. decimal.js rounds every result to `precision`
 * significant digits (20 by default, too few for 1e20 units at a sub-cent price), so the core uses
 * a clone with 1000 digits: sums and products of inputs bounded by `MAX_EXPONENT` are exact, and
 * divisions only ever feed an integer rounding (see transform.ts and package.ts). Numbers enter as
 * strings only and leave as plain (never exponential) decimal strings.
 */
import { Decimal } from '../../common/decimal.ts';
import type { BreakdownRow } from './types.ts';

export const D = Decimal.clone({ precision: 1000, rounding: Decimal.ROUND_HALF_UP, toExpNeg: -9e15, toExpPos: 9e15 });
export type Dec = Decimal;

/** Inputs beyond ±1e100 (or finer than 1e-100) are refused: no price or quantity needs them. */
export const MAX_EXPONENT = 100;
const DECIMAL_RE = /^-?\d+(\.\d+)?([eE][+-]?\d+)?$/;

/** The longest number a price or an input may spell. */
export const MAX_INPUT_CHARS = 200;
/**
 * The longest amount `roundMoney` takes: amounts computed in JS (common/decimal.ts, 200
 * significant digits; a prorated fee is a non-terminating quotient) with up to MAX_EXPONENT
 * leading or trailing zeros.
 */
export const MAX_AMOUNT_CHARS = 2 * MAX_EXPONENT + 210;

/** The decimal a string spells (e.g. "12.5", "-3", "1e20"), or undefined if it is not one, is longer than `maxChars` or is out of range. */
export function toDecimal(s: string, maxChars = MAX_INPUT_CHARS): Dec | undefined {
  if (s.length > maxChars || !DECIMAL_RE.test(s)) return undefined;
  const expPart = /[eE]([+-]?\d+)$/.exec(s);
  if (expPart && Math.abs(Number(expPart[1])) > 10 * MAX_EXPONENT) return undefined;
  const d = new D(s);
  if (!d.isZero() && (d.e > MAX_EXPONENT || d.e < -MAX_EXPONENT)) return undefined;
  return d;
}

/** A plain decimal string: no exponent, no trailing zeros, never "-0". */
export function fmt(d: Dec): string {
  return d.isZero() ? '0' : d.toFixed();
}

export function sum(ds: Dec[]): Dec {
  return ds.reduce((acc, d) => acc.plus(d), new D(0));
}

export const ZERO = new D(0);

/** What a model function returns: its own total and the rows that explain it (index.ts checks they agree). */
export interface ModelResult {
  amount: Dec;
  rows: BreakdownRow[];
}
