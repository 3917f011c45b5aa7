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
  /** How deep the element nests: 0 for a scalar, 1 for an object or array of scalars, and so on. */
  depth: number[];
}

/**
 * Elements nested deeper than this are not parsed again by lossless-json, which recurses and would
 * overflow the stack (JSON.parse does not); they keep `JSON.parse`'s value. No event that deep is
 * valid (ingest/cloudevents.ts refuses more than 64 levels), so their numbers are never used.
 */
export const MAX_EXACT_DEPTH = 256;

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
function scanValue(text: string, i: number): { end: number; exact: boolean; maxDepth: number } {
  let depth = 0;
  let maxDepth = 0;
  let exact = true;
  const n = text.length;
  while (i < n) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      i = skipString(text, i);
      if (depth === 0) return { end: i, exact, maxDepth };
    } else if (c === OPEN_OBJECT || c === OPEN_ARRAY) {
      depth++;
      if (depth > maxDepth) maxDepth = depth;
      i++;
    } else if (c === CLOSE_OBJECT || c === CLOSE_ARRAY) {
      if (depth === 0) return { end: i, exact, maxDepth };
      depth--;
      i++;
      if (depth === 0) return { end: i, exact, maxDepth };
    } else if (c === COMMA) {
      if (depth === 0) return { end: i, exact, maxDepth };
      i++;
    } else if (isNumberChar(c)) {
      const start = i;
      while (i < n && isNumberChar(text.charCodeAt(i))) i++;
      if (exact) {
        const token = text.slice(start, i);
        exact = String(Number(token)) === token;
      }
      if (depth === 0) return { end: i, exact, maxDepth };
    } else if (isSpace(c)) {
      i++;
    } else {
      // true, false, null
      const start = i;
      while (i < n && text.charCodeAt(i) >= 0x61 && text.charCodeAt(i) <= 0x7a) i++;
      if (i === start) i++;
      if (depth === 0) return { end: i, exact, maxDepth };
    }
  }
  return { end: n, exact, maxDepth };
}

function skipSpace(text: string, i: number): number {
  while (i < text.length && isSpace(text.charCodeAt(i))) i++;
  return i;
}

/** Where the elements of `text` (valid JSON) are, and whether their numbers survive `JSON.parse`. */
export function scanJson(text: string): JsonScan {
  let i = skipSpace(text, 0);
  if (text.charCodeAt(i) !== OPEN_ARRAY) {
    const { end, exact, maxDepth } = scanValue(text, i);
    return { isArray: false, starts: [i], ends: [end], exact: [exact], depth: [maxDepth] };
  }
  const scan: JsonScan = { isArray: true, starts: [], ends: [], exact: [], depth: [] };
  i = skipSpace(text, i + 1);
  while (i < text.length && text.charCodeAt(i) !== CLOSE_ARRAY) {
    const { end, exact, maxDepth } = scanValue(text, i);
    scan.starts.push(i);
    scan.ends.push(end);
    scan.exact.push(exact);
    scan.depth.push(maxDepth);
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

/**
 * Parses `text` exactly; throws `SyntaxError` on invalid JSON. Never overflows the stack: an
 * element nested deeper than `MAX_EXACT_DEPTH` keeps `JSON.parse`'s value (and `lossless` false).
 */
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
  const lossless = scan.exact.map((e, i) => !e && scan.depth[i]! <= MAX_EXACT_DEPTH);
  for (let i = 0; i < items.length; i++) {
    if (lossless[i]) items[i] = losslessParse(text.slice(scan.starts[i], scan.ends[i]));
  }
  return { isArray: scan.isArray, items, lossless, texts: () => elementTexts(text, scan) };
}

/** Bytes that are not UTF-8: where the first bad byte is. */
export class Utf8Error extends Error {
  constructor(
    readonly offset: number,
    readonly byte: number,
  ) {
    super(`not valid UTF-8 (byte 0x${byte.toString(16).padStart(2, '0')} at offset ${offset})`);
    this.name = 'Utf8Error';
  }
}

/** Keeps a byte order mark as U+FEFF: the text is exactly the bytes. */
const UTF8_FATAL = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const UTF8_LENIENT = new TextDecoder('utf-8', { ignoreBOM: true });

/**
 * `bytes` as text, or a `Utf8Error` naming the first byte that is not UTF-8. Never replaces
 * bytes with U+FFFD: `a\xff` and `a\xfe` would both become `a\ufffd`, two ids one.
 */
export function decodeUtf8Strict(bytes: Uint8Array): string {
  try {
    return UTF8_FATAL.decode(bytes);
  } catch {
    const offset = invalidUtf8Offset(bytes);
    throw new Utf8Error(offset, bytes[offset] ?? 0);
  }
}

/**
 * The length of the well-formed UTF-8 sequence at `i` (1 to 4), or 0 if there is none (RFC 3629:
 * no overlong forms, no surrogates, nothing above U+10FFFF).
 */
function sequenceLength(bytes: Uint8Array, i: number): number {
  const b = bytes[i]!;
  if (b < 0x80) return 1;
  let n: number;
  let lo = 0x80;
  let hi = 0xbf;
  if (b >= 0xc2 && b <= 0xdf) n = 2;
  else if (b === 0xe0) [n, lo] = [3, 0xa0];
  else if (b === 0xed) [n, hi] = [3, 0x9f];
  else if (b >= 0xe1 && b <= 0xef) n = 3;
  else if (b === 0xf0) [n, lo] = [4, 0x90];
  else if (b >= 0xf1 && b <= 0xf3) n = 4;
  else if (b === 0xf4) [n, hi] = [4, 0x8f];
  else return 0;
  if (i + n > bytes.length) return 0;
  const second = bytes[i + 1]!;
  if (second < lo || second > hi) return 0;
  for (let k = 2; k < n; k++) if ((bytes[i + k]! & 0xc0) !== 0x80) return 0;
  return n;
}

/** The offset of the first byte that is not part of well-formed UTF-8; -1 if all are. */
export function invalidUtf8Offset(bytes: Uint8Array): number {
  for (let i = 0; i < bytes.length; ) {
    const n = sequenceLength(bytes, i);
    if (n === 0) return i;
    i += n;
  }
  return -1;
}

/**
 * For error reports only: `bytes` as text with each byte that is not UTF-8 as the lone surrogate
 * U+DC00 + byte (U+DC80 to U+DCFF), so the text stays JSON and the bad bytes can be found in it.
 */
export function decodeUtf8Escaped(bytes: Uint8Array): string {
  let out = '';
  let run = 0;
  for (let i = 0; i < bytes.length; ) {
    const n = sequenceLength(bytes, i);
    if (n > 0) {
      i += n;
      continue;
    }
    out += UTF8_LENIENT.decode(bytes.subarray(run, i)) + String.fromCharCode(0xdc00 + bytes[i]!);
    run = ++i;
  }
  return out + UTF8_LENIENT.decode(bytes.subarray(run));
}
