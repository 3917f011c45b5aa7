import { parse as losslessParse, stringify as losslessStringify } from 'lossless-json';

/**
 * Exact JSON at native speed. `JSON.parse` is several times faster than lossless-json but
 * rounds numbers a double cannot hold (12345678901234567890 → 12345678901234567000) and
 * forgets how a number was written (1.50 → 1.5, a dimension value "1.5" instead of "1.50").
 * `scanJson` walks the text once, finds where each element of a top-level array starts and
 * ends, and tells whether every number in it reads back as written (`String(Number(t)) === t`);
 * `parseExact` then takes `JSON.parse`'s value for those elements and lossless-json's only for
 * the others. Either way every number means exactly what the text says.
 */
export interface JsonScan {
  /** True when the text is a JSON array; otherwise the whole text is the one element. */
  isArray: boolean;
  /** Element i is `text.slice(starts[i], ends[i])`. */
  starts: number[];
  ends: number[];
  /** False when the element has a number that `JSON.parse` would not give back as written. */
  exact: boolean[];
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const OPEN_ARRAY = 0x5b;
const CLOSE_ARRAY = 0x5d;
const OPEN_OBJECT = 0x7b;
const CLOSE_OBJECT = 0x7d;

const isSpace = (c: number) => c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
const isNumberChar = (c: number) => (c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x2b || c === 0x2e || c === 0x65 || c === 0x45;

/** The index just past the string whose opening quote is at `i`. */
function skipString(text: string, i: number): number {
  for (let j = i + 1; ; ) {
    const q = text.indexOf('"', j);
    if (q < 0) return text.length;
    let backslashes = 0;
    for (let k = q - 1; text.charCodeAt(k) === BACKSLASH; k--) backslashes++;
    if (backslashes % 2 === 0) return q + 1;
    j = q + 1;
  }
}

/**
 * Scans one JSON value starting at `i` (no leading space); returns where it ends and whether its
 * numbers are exact as doubles. The text must be valid JSON (callers parse it first).
 */
function scanValue(text: string, i: number): { end: number; exact: boolean } {
  let depth = 0;
  let exact = true;
  const n = text.length;
  while (i < n) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      i = skipString(text, i);
      if (depth === 0) return { end: i, exact };
    } else if (c === OPEN_OBJECT || c === OPEN_ARRAY) {
      depth++;
      i++;
    } else if (c === CLOSE_OBJECT || c === CLOSE_ARRAY) {
      if (depth === 0) return { end: i, exact };
      depth--;
      i++;
      if (depth === 0) return { end: i, exact };
    } else if (c === COMMA) {
      if (depth === 0) return { end: i, exact };
      i++;
    } else if (isNumberChar(c)) {
      const start = i;
      while (i < n && isNumberChar(text.charCodeAt(i))) i++;
      if (exact) {
        const token = text.slice(start, i);
        exact = String(Number(token)) === token;
      }
      if (depth === 0) return { end: i, exact };
    } else if (isSpace(c)) {
      i++;
    } else {
      // true, false, null
      const start = i;
      while (i < n && text.charCodeAt(i) >= 0x61 && text.charCodeAt(i) <= 0x7a) i++;
      if (i === start) i++;
      if (depth === 0) return { end: i, exact };
    }
  }
  return { end: n, exact };
}

function skipSpace(text: string, i: number): number {
  while (i < text.length && isSpace(text.charCodeAt(i))) i++;
  return i;
}

/** Where the elements of `text` (valid JSON) are, and whether their numbers survive `JSON.parse`. */
export function scanJson(text: string): JsonScan {
  let i = skipSpace(text, 0);
  if (text.charCodeAt(i) !== OPEN_ARRAY) {
    const { end, exact } = scanValue(text, i);
    return { isArray: false, starts: [i], ends: [end], exact: [exact] };
  }
  const scan: JsonScan = { isArray: true, starts: [], ends: [], exact: [] };
  i = skipSpace(text, i + 1);
  while (i < text.length && text.charCodeAt(i) !== CLOSE_ARRAY) {
    const { end, exact } = scanValue(text, i);
    scan.starts.push(i);
    scan.ends.push(end);
    scan.exact.push(exact);
    i = skipSpace(text, end);
    if (text.charCodeAt(i) === COMMA) i = skipSpace(text, i + 1);
  }
  return scan;
}

/** The texts of the scanned elements, byte for byte as received. */
export function elementTexts(text: string, scan: JsonScan): string[] {
  return scan.starts.map((s, i) => text.slice(s, scan.ends[i]));
}

export interface ExactJson {
  isArray: boolean;
  /** The elements (the one value when not an array); numbers exact (see the module comment). */
  items: unknown[];
  /** Per element: true when it was parsed by lossless-json (its numbers are LosslessNumbers). */
  lossless: boolean[];
  /** The elements' texts: as received, byte for byte (re-serialised exactly in the fallback). */
  texts(): string[];
}

/** Parses `text` exactly; throws `SyntaxError` on invalid JSON. */
export function parseExact(text: string): ExactJson {
  const parsed: unknown = JSON.parse(text);
  const scan = scanJson(text);
  const items = scan.isArray ? (parsed as unknown[]) : [parsed];
  if (items.length !== scan.starts.length) {
    // Cannot happen for valid JSON; if it ever does, the slow exact parse is still right.
    const all: unknown = losslessParse(text);
    const slow = Array.isArray(all) ? all : [all];
    return { isArray: Array.isArray(all), items: slow, lossless: slow.map(() => true), texts: () => slow.map((x) => losslessStringify(x) ?? 'null') };
  }
  const lossless = scan.exact.map((e) => !e);
  for (let i = 0; i < items.length; i++) {
    if (lossless[i]) items[i] = losslessParse(text.slice(scan.starts[i], scan.ends[i]));
  }
  return { isArray: scan.isArray, items, lossless, texts: () => elementTexts(text, scan) };
}
