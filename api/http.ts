import { Readable } from 'node:stream';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { AppError } from '../common/errors.ts';
import { canonicalTimeZone, unknownTimeZone } from '../usage/index.ts';

/** Parses `input` with a zod schema; a failure is a 400 naming every field and reason. */
export function parseWith<S extends z.ZodTypeAny>(schema: S, input: unknown, where: 'body' | 'query' | 'params' = 'body'): z.infer<S> {
  const r = schema.safeParse(input);
  if (r.success) return r.data;
  const errors = r.error.issues.map((i) => ({ field: [where, ...i.path].join('.'), reason: i.message }));
  throw new AppError('REQUEST_INVALID', `invalid ${where}: ${errors.map((e) => `${e.field}: ${e.reason}`).join('; ')}`, { details: { errors } });
}

/** The request body as JSON (bodies arrive as text: ingest needs the exact bytes). */
export function jsonBody(req: FastifyRequest): unknown {
  const text = req.body;
  if (typeof text !== 'string' || text.length === 0) throw new AppError('REQUEST_INVALID', 'request body is empty; send a JSON object');
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new AppError('INGEST_MALFORMED_JSON', `request body is not valid JSON: ${(err as Error).message}`);
  }
}

export const isoTime = (field: string) =>
  z
    .string()
    .refine((s) => /^\d{4}-\d{2}-\d{2}T/.test(s) && !Number.isNaN(Date.parse(s)), `${field} must be an RFC 3339 date-time such as 2026-01-01T00:00:00Z`)
    .transform((s) => Date.parse(s));

/** The 400 reason for a time zone Node or ClickHouse does not know. */

/** A time-zone parameter: an IANA name both Node and ClickHouse know, in any case, as its canonical spelling (`america/new_york` is `America/New_York`). */
/** A calendar month, YYYY-MM with a month 01-12 (2026-13 is refused, not read as January 2027). */
export const monthParam = () => z.string().regex(/^\d{4}-(0[1-9]|1[0-2])$/, 'period must be a month YYYY-MM, e.g. 2026-10 (month 01-12)');

export const timeZoneParam = () =>
  z.string().transform((tz, ctx) => {
    const canonical = canonicalTimeZone(tz);
    if (canonical !== undefined) return canonical;
    ctx.addIssue({ code: z.ZodIssueCode.custom, message: unknownTimeZone(tz) });
    return z.NEVER;
  });

export const stringList = z
  .union([z.string(), z.array(z.string())])
  .optional()
  .transform((v) => (v === undefined ? [] : Array.isArray(v) ? v : [v]));

/** A decimal number as the API writes amounts and quantities: a spreadsheet reads it as a number, never a formula. */
const CSV_NUMBER = /^-?\d+(\.\d+)?$/;

/**
 * One CSV cell (RFC 4180 quoting), safe to open in a spreadsheet (OWASP CSV injection): text
 * starting with `=`, `+`, `-`, `@`, a tab or a carriage return gets a leading `'`, so it is
 * shown as text and never run as a formula. A plain decimal number such as `-12.50` (a credit)
 * is left as it is: it is a number, and stays one in the spreadsheet.
 */
export function csvCell(v: string | number | null | undefined): string {
  const s = v === null || v === undefined ? '' : String(v);
  const safe = /^[=+\-@\t\r]/.test(s) && !CSV_NUMBER.test(s) ? `'${s}` : s;
  return /[",\n\r]/.test(safe) ? `"${safe.replaceAll('"', '""')}"` : safe;
}

/** Sends rows as CSV (see `csvCell`: RFC 4180 quoting, formulas neutralised) with a download filename: finance exports. */
export function sendCsv(reply: FastifyReply, filename: string, header: string[], rows: (string | number | null | undefined)[][]): FastifyReply {
  return reply
    .header('content-type', 'text/csv; charset=utf-8')
    .header('content-disposition', `attachment; filename="${filename.replace(/[^\x20-\x7e]|["\\]/g, '_')}"`)
    .send([header, ...rows].map((r) => r.map(csvCell).join(',')).join('\r\n') + '\r\n');
}

/**
 * `JSON.stringify(value)` in pieces of about `chunkChars`: each top-level array is written an
 * element at a time, so a large answer (a close of 100,000 invoices, hundreds of MB) is never
 * one string plus a Buffer copy of it in memory, nor over V8's maximum string length.
 */
export function* jsonChunks(value: Record<string, unknown>, chunkChars = 1 << 20): Generator<string> {
  let buf = '{';
  let sep = '';
  for (const [k, v] of Object.entries(value)) {
    if (!Array.isArray(v)) {
      const s = JSON.stringify(v);
      if (s === undefined) continue; // as JSON.stringify does with undefined, functions, symbols
      buf += `${sep}${JSON.stringify(k)}:${s}`;
    } else {
      buf += `${sep}${JSON.stringify(k)}:[`;
      for (let i = 0; i < v.length; i++) {
        buf += (i ? ',' : '') + (JSON.stringify(v[i]) ?? 'null');
        if (buf.length >= chunkChars) {
          yield buf;
          buf = '';
        }
      }
      buf += ']';
    }
    sep = ',';
  }
  yield `${buf}}`;
}

/** Sends `value` as JSON, the same bytes as `reply.send(value)`, serialized as it is written (see `jsonChunks`). */
export function sendJsonStream(reply: FastifyReply, value: Record<string, unknown>): FastifyReply {
  return reply.type('application/json; charset=utf-8').send(Readable.from(jsonChunks(value)));
}

/** True if the client asked for CSV (`?format=csv` or `Accept: text/csv`). */
export function wantsCsv(req: FastifyRequest): boolean {
  const q = req.query as Record<string, unknown> | undefined;
  return q?.format === 'csv' || /\btext\/csv\b/.test(req.headers.accept ?? '');
}
