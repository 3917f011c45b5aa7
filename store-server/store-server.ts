import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import zlib from 'node:zlib';
import { promisify } from 'node:util';
import { createHash, randomUUID, timingSafeEqual } from 'node:crypto';
import { AppError, errorMessage } from '../common/errors.ts';
import type { Logger } from '../common/logger.ts';

/**
 * `meterline store`: one process owns a chDB data directory and serves it over the subset of
 * ClickHouse's HTTP interface that `@clickhouse/client` uses (query, command, exec, insert,
 * ping), so other local processes reach it with `CLICKHOUSE_URL` exactly as they would reach a
 * ClickHouse server. It shares one directory between processes; it is not a cluster.
 *
 * Each request runs on a connection of its own (opened for it, closed after it): settings and
 * query parameters are applied with `SET` on that connection, so nothing one request sets is
 * seen by another, and requests run in parallel up to `maxConcurrentQueries`.
 */

type Chdb = typeof import('chdb');
type ChdbSession = InstanceType<Chdb['Session']>;
type ChdbResult = Awaited<ReturnType<ChdbSession['queryAsync']>>;

export interface StoreServerOptions {
  /** The chDB data directory; created if missing. One process may own it at a time. */
  dataDir: string;
  /** Listen address; default 127.0.0.1. Any non-loopback address requires `password`. */
  host?: string;
  /** Listen port; 0 (the default) picks a free one. */
  port?: number;
  /** When set, every query must carry it (Basic auth, X-ClickHouse-Key or `password=`). */
  password?: string;
  logger: Logger;
  /** Queries executing at once; later ones wait their turn. Default 8. */
  maxConcurrentQueries?: number;
  /** Largest request body accepted, compressed and decompressed. Default 256 MiB. */
  maxBodyBytes?: number;
}

export interface StoreServer {
  /** The value for `CLICKHOUSE_URL`, e.g. `http://127.0.0.1:8123`. */
  url: string;
  port: number;
  host: string;
  dataDir: string;
  /** Stops accepting, lets queries in flight finish and answer, then releases chDB. Idempotent. */
  close(): Promise<void>;
}

// ---------------------------------------------------------------------------------------------
// Pure part: from an HTTP request to what to run, and from an exception to an HTTP answer.

/** Error codes the server raises itself (the engine raises the rest), as ClickHouse numbers them. */
export const ServerErrorCodes = {
  UNSUPPORTED_METHOD: 1,
  BAD_ARGUMENTS: 36,
  NOT_IMPLEMENTED: 48,
  SYNTAX_ERROR: 62,
  NO_DATA_TO_INSERT: 108,
  UNKNOWN_SETTING: 115,
  QUERY_IS_TOO_LARGE: 229,
  CANNOT_DECOMPRESS: 271,
  SESSION_NOT_FOUND: 372,
  SESSION_IS_LOCKED: 373,
  INVALID_SESSION_TIMEOUT: 374,
  AUTHENTICATION_FAILED: 516,
} as const;
type ServerErrorType = keyof typeof ServerErrorCodes;

/** An exception in ClickHouse's terms: numeric code, upper-case type, message. */
export class ClickHouseException extends Error {
  constructor(
    readonly code: number,
    readonly type: string,
    message: string,
    /** The full text when it came from the engine (already `Code: N. DB::Exception: ...`). */
    readonly engineText?: string,
  ) {
    super(message);
    this.name = 'ClickHouseException';
  }

  static of(type: ServerErrorType, message: string): ClickHouseException {
    return new ClickHouseException(ServerErrorCodes[type], type, message);
  }

  /** What a ClickHouse server sends as the error body; `@clickhouse/client` parses it into a ClickHouseError. */
  get text(): string {
    return this.engineText ?? `Code: ${this.code}. DB::Exception: ${this.message}. (${this.type})`;
  }
}

// The same shape `@clickhouse/client` recognises (client-common/src/error/error.ts).
const ENGINE_ERROR = /^Code: (?<code>\d+)\..*?Exception: .+?\((?<type>(?=[A-Z0-9_]*[A-Z]{3})[A-Z0-9_]+)\)/s;

/** The engine's `Code: N. DB::Exception: ... (TYPE)` text as an exception; undefined for anything else. */
export function parseEngineError(text: string): ClickHouseException | undefined {
  const m = ENGINE_ERROR.exec(text.trim());
  if (!m?.groups) return undefined;
  return new ClickHouseException(Number(m.groups.code), m.groups.type!, text.trim(), text.trim());
}

const STATUS_400 = new Set(['SYNTAX_ERROR', 'INCORRECT_DATA', 'TYPE_MISMATCH', 'VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE', 'BAD_ARGUMENTS', 'CANNOT_DECOMPRESS', 'UNKNOWN_ELEMENT_IN_AST', 'UNEXPECTED_AST_STRUCTURE', 'TOO_DEEP_AST', 'TOO_BIG_AST']);
const STATUS_404 = new Set(['UNKNOWN_TABLE', 'UNKNOWN_FUNCTION', 'UNKNOWN_IDENTIFIER', 'UNKNOWN_TYPE', 'UNKNOWN_STORAGE', 'UNKNOWN_DATABASE', 'UNKNOWN_SETTING', 'UNKNOWN_DIRECTION_OF_SORTING', 'UNKNOWN_AGGREGATE_FUNCTION', 'UNKNOWN_FORMAT', 'UNKNOWN_DATABASE_ENGINE', 'UNKNOWN_TYPE_OF_QUERY', 'UNKNOWN_ROLE', 'SESSION_NOT_FOUND']);

/** The HTTP status ClickHouse answers an exception with (HTTPHandler's mapping, common cases). */
export function httpStatusOf(type: string): number {
  if (type === 'AUTHENTICATION_FAILED' || type === 'REQUIRED_PASSWORD' || type === 'WRONG_PASSWORD' || type === 'UNKNOWN_USER') return 401;
  if (type === 'READONLY' || type === 'ACCESS_DENIED') return 403;
  if (type.startsWith('CANNOT_PARSE_') || STATUS_400.has(type)) return 400;
  if (STATUS_404.has(type)) return 404;
  if (type === 'UNSUPPORTED_METHOD') return 405;
  if (type === 'QUERY_IS_TOO_LARGE') return 413;
  if (type === 'NOT_IMPLEMENTED') return 501;
  if (type === 'TIMEOUT_EXCEEDED') return 408;
  if (type === 'SESSION_IS_LOCKED' || type === 'TOO_MANY_SIMULTANEOUS_QUERIES') return 503;
  return 500;
}

/** What one request asks the store to run. */
export interface StoreRequest {
  /** The statement; for an INSERT whose statement is in the URL, followed by a newline and the data. */
  query: string;
  /** The data part of `query` when the statement came from the URL and the data from the body. */
  data: string;
  /** `param_<name>` values in ClickHouse's text format, bound to `{name:Type}` unchanged. */
  params: Record<string, string>;
  /** ClickHouse settings for this request only. */
  settings: Record<string, string>;
  database?: string;
  queryId: string;
  /** Output format when the statement has no FORMAT clause (ClickHouse's HTTP default: TabSeparated). */
  defaultFormat: string;
  /** `enable_http_compression=1`: the response may be compressed per Accept-Encoding. */
  compressResponse: boolean;
  session?: { id: string; timeoutMs: number; check: boolean; close: boolean };
}

/** URL parameters that are part of the HTTP protocol, not settings. */
const PROTOCOL_PARAMS = new Set(['query', 'query_id', 'database', 'default_format', 'session_id', 'session_timeout', 'session_check', 'close_session', 'user', 'password', 'quota_key', 'role', 'stacktrace', 'buffer_size', 'wait_end_of_query', 'client_protocol_version', 'compress', 'decompress']);
/** Settings that only concern the HTTP layer (they mean nothing to the engine, which rejects some). */
const HTTP_ONLY_SETTINGS = new Set([
  'enable_http_compression',
  'http_zlib_compression_level',
  'http_response_compression_method',
  'http_native_compression_disable_checksumming_on_decompress',
  'send_progress_in_http_headers',
  'http_headers_progress_interval_ms',
  'http_send_progress_interval_ms',
  'http_response_buffer_size',
  'http_wait_end_of_query',
  'add_http_cors_header',
  'cancel_http_readonly_queries_on_client_close',
]);
const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]*$/;
const DEFAULT_SESSION_TIMEOUT_S = 60;
const MAX_SESSION_TIMEOUT_S = 3600;

/**
 * Reads a request the way ClickHouse's HTTP handler does: the statement is the `query` URL
 * parameter (or multipart part) followed by the body, `param_*` are query parameters, the
 * protocol's own parameters are taken out, and every other parameter is a setting.
 * A GET request runs with `readonly = 2`, as on a server.
 */
export function parseStoreRequest(input: { method: string; search: URLSearchParams; body: string; form?: Map<string, string> }): StoreRequest {
  const { method, search, body, form } = input;
  const params: Record<string, string> = {};
  const settings: Record<string, string> = {};
  for (const [name, value] of search) {
    if (name.startsWith('param_')) params[name.slice(6)] = value;
    else if (PROTOCOL_PARAMS.has(name) || HTTP_ONLY_SETTINGS.has(name)) continue;
    else settings[name] = value;
  }
  for (const [name, value] of form ?? []) if (name.startsWith('param_')) params[name.slice(6)] = value;
  for (const name of Object.keys(params)) {
    if (!IDENTIFIER.test(name)) throw ClickHouseException.of('BAD_ARGUMENTS', `Invalid query parameter name '${name}'`);
  }
  for (const name of Object.keys(settings)) {
    if (!IDENTIFIER.test(name)) throw ClickHouseException.of('UNKNOWN_SETTING', `Unknown setting '${name}'`);
  }
  if (search.get('compress') === '1' || search.get('decompress') === '1') {
    throw ClickHouseException.of('NOT_IMPLEMENTED', "ClickHouse's native compression (compress=1, decompress=1) is not supported by meterline store; use Content-Encoding or Accept-Encoding instead");
  }
  if (method === 'GET' && settings.readonly === undefined) settings.readonly = '2';

  const statement = form?.get('query') ?? search.get('query') ?? '';
  const data = method === 'GET' || form ? '' : body;
  const query = statement && data ? `${statement}\n${data}` : statement || data;
  if (query.trim() === '') throw ClickHouseException.of('SYNTAX_ERROR', 'Empty query');

  let session: StoreRequest['session'];
  const sessionId = search.get('session_id');
  if (sessionId) {
    const timeoutText = search.get('session_timeout');
    const timeoutS = timeoutText === null ? DEFAULT_SESSION_TIMEOUT_S : Number(timeoutText);
    if (!Number.isInteger(timeoutS) || timeoutS < 0 || timeoutS > MAX_SESSION_TIMEOUT_S) {
      throw ClickHouseException.of('INVALID_SESSION_TIMEOUT', `Invalid session timeout: '${timeoutText}', must be an integer from 0 to ${MAX_SESSION_TIMEOUT_S}`);
    }
    session = { id: sessionId, timeoutMs: timeoutS * 1000, check: search.get('session_check') === '1', close: search.get('close_session') === '1' };
  }

  const database = search.get('database') || undefined;
  const queryId = search.get('query_id') || randomUUID();
  if (!/^[\x20-\x7e]{1,256}$/.test(queryId)) throw ClickHouseException.of('BAD_ARGUMENTS', 'query_id must be 1-256 printable ASCII characters');
  return {
    query,
    data: statement ? data : '',
    params,
    settings,
    ...(database ? { database } : {}),
    queryId,
    defaultFormat: search.get('default_format') || 'TabSeparated',
    compressResponse: search.get('enable_http_compression') === '1',
    ...(session ? { session } : {}),
  };
}

/** A ClickHouse string literal holding `value` exactly. */
export function quoteString(value: string): string {
  return `'${value.replace(/[\\'\0]/g, (c) => (c === '\0' ? '\\0' : `\\${c}`))}'`;
}

/** A ClickHouse identifier in backquotes. */
function quoteIdentifier(name: string): string {
  return `\`${name.replace(/[\\`]/g, (c) => `\\${c}`)}\``;
}

/**
 * The statements that prepare a request's connection before its query: `USE` for the database,
 * then one `SET` of its settings and its query parameters (`SET param_x = '<text>'` binds the
 * text as the HTTP interface's `param_x` does: parsed per the placeholder's type).
 */
export function preparationStatements(req: Pick<StoreRequest, 'database' | 'settings' | 'params'>): string[] {
  const out: string[] = [];
  if (req.database) out.push(`USE ${quoteIdentifier(req.database)}`);
  const assignments = [
    ...Object.entries(req.settings).map(([k, v]) => `${k} = ${quoteString(v)}`),
    ...Object.entries(req.params).map(([k, v]) => `param_${k} = ${quoteString(v)}`),
  ];
  if (assignments.length > 0) out.push(`SET ${assignments.join(', ')}`);
  return out;
}

/** `multipart/form-data` fields (the client sends large query parameters that way). */
export function parseMultipart(body: Buffer, boundary: string): Map<string, string> {
  const fields = new Map<string, string>();
  const delimiter = Buffer.from(`--${boundary}`);
  let at = body.indexOf(delimiter);
  while (at >= 0) {
    let start = at + delimiter.length;
    if (body.subarray(start, start + 2).toString() === '--') break;
    if (body.subarray(start, start + 2).toString() === '\r\n') start += 2;
    const next = body.indexOf(delimiter, start);
    if (next < 0) break;
    const part = body.subarray(start, next);
    const headerEnd = part.indexOf('\r\n\r\n');
    if (headerEnd < 0) throw ClickHouseException.of('BAD_ARGUMENTS', 'Malformed multipart body: a part has no header');
    const headers = part.subarray(0, headerEnd).toString('utf8');
    const name = /name="([^"]*)"/i.exec(headers)?.[1];
    if (/filename=/i.test(headers)) throw ClickHouseException.of('NOT_IMPLEMENTED', 'External data tables (multipart files) are not supported by meterline store');
    let content = part.subarray(headerEnd + 4);
    if (content.subarray(-2).toString() === '\r\n') content = content.subarray(0, -2);
    if (name !== undefined) fields.set(name, content.toString('utf8'));
    at = next;
  }
  return fields;
}

export function isLoopback(host: string): boolean {
  if (host === 'localhost') return true;
  if (net.isIPv4(host)) return host.startsWith('127.');
  if (net.isIPv6(host)) return host === '::1' || host === '0:0:0:0:0:0:0:1';
  return false;
}

// ---------------------------------------------------------------------------------------------
// Shell: HTTP server, chDB connections, sessions, shutdown.

const gunzip = promisify(zlib.gunzip);
const inflate = promisify(zlib.inflate);
const brotliDecompress = promisify(zlib.brotliDecompress);
const gzip = promisify(zlib.gzip);
const deflate = promisify(zlib.deflate);
const brotliCompress = promisify(zlib.brotliCompress);
const STRICT_UTF8 = new TextDecoder('utf-8', { fatal: true });

/** A counting semaphore: at most `limit` holders, the rest wait in order. */
class Gate {
  private active = 0;
  private readonly waiting: (() => void)[] = [];
  constructor(private readonly limit: number) {}
  async acquire(): Promise<void> {
    if (this.active < this.limit) {
      this.active++;
      return;
    }
    await new Promise<void>((resolve) => this.waiting.push(resolve));
  }
  release(): void {
    const next = this.waiting.shift();
    if (next) next();
    else this.active--;
  }
}

interface NamedSession {
  session: ChdbSession;
  busy: boolean;
  timer?: NodeJS.Timeout;
}

function sha256(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

/** The password a ClickHouse client sent: X-ClickHouse-Key, Basic auth, or the `password` URL parameter. */
function suppliedPassword(req: http.IncomingMessage, search: URLSearchParams): string {
  const key = req.headers['x-clickhouse-key'];
  if (typeof key === 'string') return key;
  const auth = req.headers.authorization;
  if (auth?.startsWith('Basic ')) {
    const decoded = Buffer.from(auth.slice(6), 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    return colon < 0 ? '' : decoded.slice(colon + 1);
  }
  return search.get('password') ?? '';
}

async function readBody(req: http.IncomingMessage, maxBytes: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > maxBytes) throw ClickHouseException.of('QUERY_IS_TOO_LARGE', `Request body is larger than ${maxBytes} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

async function decodeBody(raw: Buffer, encoding: string | undefined, maxBytes: number): Promise<Buffer> {
  const codec = (encoding ?? '').trim().toLowerCase();
  if (raw.length === 0 || codec === '' || codec === 'identity' || codec === 'none') return raw;
  const opts = { maxOutputLength: maxBytes };
  try {
    if (codec === 'gzip' || codec === 'x-gzip') return await gunzip(raw, opts);
    if (codec === 'deflate') return await inflate(raw, opts);
    if (codec === 'br') return await brotliDecompress(raw, opts);
    const zstd = (zlib as unknown as { zstdDecompress?: (b: Buffer, o: object, cb: (e: Error | null, r: Buffer) => void) => void }).zstdDecompress;
    if (codec === 'zstd' && zstd) return await promisify(zstd)(raw, opts);
  } catch (err) {
    if (err instanceof RangeError) throw ClickHouseException.of('QUERY_IS_TOO_LARGE', `Decompressed request body is larger than ${maxBytes} bytes`);
    throw ClickHouseException.of('CANNOT_DECOMPRESS', `Cannot decompress the ${codec} request body: ${errorMessage(err)}`);
  }
  throw ClickHouseException.of('NOT_IMPLEMENTED', `Unsupported Content-Encoding: ${codec} (meterline store reads gzip, deflate and br)`);
}

async function encodeBody(body: Buffer, acceptEncoding: string | undefined): Promise<{ body: Buffer; encoding?: string }> {
  const accepted = (acceptEncoding ?? '').toLowerCase().split(',').map((s) => s.split(';')[0]!.trim());
  if (accepted.includes('gzip')) return { body: await gzip(body), encoding: 'gzip' };
  if (accepted.includes('br')) return { body: await brotliCompress(body), encoding: 'br' };
  if (accepted.includes('deflate')) return { body: await deflate(body), encoding: 'deflate' };
  return { body };
}

function summaryOf(result: ChdbResult | undefined, bodyBytes: number): string {
  return JSON.stringify({
    read_rows: String(result?.rowsRead ?? 0),
    read_bytes: String(result?.bytesRead ?? 0),
    // chDB does not report what a statement wrote, nor how many rows a result holds.
    written_rows: '0',
    written_bytes: '0',
    total_rows_to_read: String(result?.rowsRead ?? 0),
    result_rows: '0',
    result_bytes: String(bodyBytes),
    elapsed_ns: String(Math.max(0, Math.round((result?.elapsed ?? 0) * 1e9))),
  });
}

/** Starts the store server: opens chDB in `dataDir`, then listens. */
export async function startStoreServer(opts: StoreServerOptions): Promise<StoreServer> {
  const host = opts.host ?? '127.0.0.1';
  const port = opts.port ?? 0;
  const logger = opts.logger;
  const maxBodyBytes = opts.maxBodyBytes ?? 256 * 1024 * 1024;
  const password = opts.password || undefined;
  if (!password && !isLoopback(host)) {
    throw new AppError('CONFIG_INVALID', `refusing to listen on ${host} without a password; set STORE_PASSWORD (clients then set CLICKHOUSE_PASSWORD), or listen on 127.0.0.1`);
  }
  const passwordHash = password === undefined ? undefined : sha256(password);
  const dataDir = path.resolve(opts.dataDir);
  fs.mkdirSync(dataDir, { recursive: true });

  const chdb: Chdb = await import('chdb');
  // The anchor connection holds the data directory for the server's lifetime; each request
  // opens a cheap connection of its own to the same directory.
  let anchor: ChdbSession | undefined;
  let engineVersion: string;
  try {
    anchor = new chdb.Session(dataDir);
    engineVersion = (await anchor.queryAsync('SELECT version()', { format: 'TabSeparated' })).text().trim();
  } catch (err) {
    anchor?.close();
    throw new AppError('STORE_UNAVAILABLE', `cannot open the chDB data directory ${dataDir}: ${errorMessage(err)} (one process owns a directory: is a meterline start or another meterline store using it?)`, { cause: err });
  }

  const gate = new Gate(opts.maxConcurrentQueries ?? 8);
  const sessions = new Map<string, NamedSession>();
  const inflight = new Set<Promise<void>>();
  let closing: Promise<void> | undefined;

  const closeNamed = (id: string) => {
    const s = sessions.get(id);
    if (!s) return;
    sessions.delete(id);
    clearTimeout(s.timer);
    s.session.close();
  };

  /** Runs a parsed request on its connection: preparation statements, then the query. */
  async function execute(req: StoreRequest): Promise<ChdbResult | undefined> {
    let named: NamedSession | undefined;
    if (req.session) {
      named = sessions.get(req.session.id);
      if (!named && req.session.check) throw ClickHouseException.of('SESSION_NOT_FOUND', `Session ${req.session.id} not found`);
      if (named?.busy) throw ClickHouseException.of('SESSION_IS_LOCKED', `Session ${req.session.id} is locked by a concurrent client`);
      if (!named) {
        named = { session: new chdb.Session(dataDir), busy: false };
        sessions.set(req.session.id, named);
      }
      clearTimeout(named.timer);
      named.busy = true;
    }
    await gate.acquire();
    let session: ChdbSession | undefined;
    try {
      session = named ? named.session : new chdb.Session(dataDir);
      for (const statement of preparationStatements(req)) await session.queryAsync(statement, { format: 'TabSeparated' });
      try {
        return await session.queryAsync(req.query, { format: req.defaultFormat });
      } catch (err) {
        // An INSERT with an empty body inserts nothing, as on a server (the client sends one for an empty stream).
        if (req.data.trim() === '' && /\(NO_DATA_TO_INSERT\)/.test(errorMessage(err))) return undefined;
        throw err;
      }
    } finally {
      gate.release();
      if (named && req.session) {
        named.busy = false;
        const id = req.session.id;
        if (req.session.close || closing) closeNamed(id);
        else named.timer = setTimeout(() => closeNamed(id), req.session.timeoutMs).unref();
      } else {
        session?.close();
      }
    }
  }

  function sendException(res: http.ServerResponse, ex: ClickHouseException, queryId?: string) {
    const body = `${ex.text}\n`;
    res.writeHead(httpStatusOf(ex.type), {
      'Content-Type': 'text/plain; charset=UTF-8',
      'Content-Length': Buffer.byteLength(body),
      'X-ClickHouse-Exception-Code': String(ex.code),
      ...(queryId ? { 'X-ClickHouse-Query-Id': queryId } : {}),
      ...(closing ? { Connection: 'close' } : {}),
    });
    res.end(body);
  }

  function sendPlain(res: http.ServerResponse, status: number, text: string) {
    res.writeHead(status, { 'Content-Type': 'text/plain; charset=UTF-8', 'Content-Length': Buffer.byteLength(text), ...(closing ? { Connection: 'close' } : {}) });
    res.end(text);
  }

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://store');
    const method = req.method ?? 'GET';
    if (closing) {
      // A request that raced the shutdown on a kept-alive connection: unavailable, not rejected.
      req.resume();
      return sendPlain(res, 503, 'meterline store is shutting down\n');
    }
    if (url.pathname === '/ping' && (method === 'GET' || method === 'HEAD')) return sendPlain(res, 200, 'Ok.\n');
    if (url.pathname !== '/') {
      req.resume();
      return sendPlain(res, 404, `There is no handle ${url.pathname}\n\nUse / or /ping for health checks.\n`);
    }
    if (method !== 'GET' && method !== 'POST') {
      req.resume();
      return sendException(res, ClickHouseException.of('UNSUPPORTED_METHOD', `HTTP method ${method} is not supported; use GET or POST`));
    }
    if (method === 'GET' && !url.searchParams.has('query')) return sendPlain(res, 200, 'Ok.\n');
    if (passwordHash && !timingSafeEqual(sha256(suppliedPassword(req, url.searchParams)), passwordHash)) {
      req.resume();
      return sendException(res, ClickHouseException.of('AUTHENTICATION_FAILED', 'default: Authentication failed: password is incorrect, or there is no user with such name'));
    }

    let parsed: StoreRequest | undefined;
    const started = process.hrtime.bigint();
    try {
      const raw = await readBody(req, maxBodyBytes);
      const decoded = await decodeBody(raw, req.headers['content-encoding'], maxBodyBytes);
      const boundary = /^multipart\/form-data;.*boundary=(?:"([^"]+)"|([^;\s]+))/i.exec(req.headers['content-type'] ?? '');
      const form = boundary ? parseMultipart(decoded, boundary[1] ?? boundary[2]!) : undefined;
      let body: string;
      try {
        body = form ? '' : STRICT_UTF8.decode(decoded);
      } catch {
        throw ClickHouseException.of('NOT_IMPLEMENTED', 'The request body is not UTF-8 text: binary formats (RowBinary, Native, Parquet, ...) are not supported by meterline store; use a text format such as JSONEachRow');
      }
      parsed = parseStoreRequest({ method, search: url.searchParams, body, ...(form ? { form } : {}) });
      const result = await execute(parsed);
      const bytes = result ? result.bytes() : new Uint8Array(0);
      let out: { body: Buffer; encoding?: string } = { body: Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength) };
      const summary = summaryOf(result, out.body.length);
      if (parsed.compressResponse && out.body.length > 0) out = await encodeBody(out.body, req.headers['accept-encoding']);
      res.writeHead(200, {
        'Content-Type': 'text/plain; charset=UTF-8',
        'Content-Length': out.body.length,
        'X-ClickHouse-Query-Id': parsed.queryId,
        'X-ClickHouse-Summary': summary,
        'X-ClickHouse-Server-Display-Name': 'meterline-store',
        ...(out.encoding ? { 'Content-Encoding': out.encoding } : {}),
        ...(closing ? { Connection: 'close' } : {}),
      });
      res.end(out.body);
      logger.debug({ queryId: parsed.queryId, ms: Number(process.hrtime.bigint() - started) / 1e6, bytes: out.body.length }, 'query');
    } catch (err) {
      if (req.destroyed && !req.complete) {
        logger.debug({ queryId: parsed?.queryId }, 'client went away before its request was read');
        return;
      }
      const ex = err instanceof ClickHouseException ? err : parseEngineError(errorMessage(err));
      if (ex) {
        logger.debug({ queryId: parsed?.queryId, code: ex.code, type: ex.type }, 'query failed');
        req.resume();
        return sendException(res, ex, parsed?.queryId);
      }
      // Not a ClickHouse exception (the engine or its binding failed): answered as the server
      // failing, so the client reports an unavailable store rather than a rejected query.
      logger.error({ err, queryId: parsed?.queryId }, 'store request failed');
      req.resume();
      if (!res.headersSent) sendPlain(res, 500, `meterline store: ${errorMessage(err)}\n`);
      else res.destroy();
    }
  }

  // Query parameters travel in the URL: accept URLs as long as ClickHouse does (http_max_uri_size, 1 MiB).
  const server = http.createServer({ maxHeaderSize: 1024 * 1024 + 64 * 1024 }, (req, res) => {
    const p = handle(req, res).catch((err: unknown) => {
      logger.error({ err }, 'store request handler failed');
      res.destroy();
    });
    inflight.add(p);
    void p.finally(() => inflight.delete(p));
  });
  server.keepAliveTimeout = 10_000;

  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (err) {
    anchor.close();
    await chdb.drainPending();
    throw new AppError('CONFIG_INVALID', `cannot listen on ${host}:${port}: ${errorMessage(err)}`, { cause: err });
  }
  const bound = (server.address() as net.AddressInfo).port;
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${bound}`;
  logger.info({ url, dataDir, engine: engineVersion, password: Boolean(password) }, 'meterline store listening');

  return {
    url,
    port: bound,
    host,
    dataDir,
    close() {
      closing ??= (async () => {
        // 1. stop accepting; idle kept-alive connections close now, busy ones after their answer
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        server.closeIdleConnections();
        // 2. queries in flight run to the end and answer
        while (inflight.size > 0) await Promise.allSettled([...inflight]);
        server.closeIdleConnections();
        const force = setTimeout(() => server.closeAllConnections(), 5_000).unref();
        await closed;
        clearTimeout(force);
        // 3. release chDB: session connections, then the anchor, once nothing native runs
        for (const id of [...sessions.keys()]) closeNamed(id);
        await chdb.drainPending();
        anchor.close();
        await chdb.drainPending();
        logger.info({ url }, 'meterline store stopped');
      })();
      return closing;
    },
  };
}
