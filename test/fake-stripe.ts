import { createHash, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

/**
 * A local stand-in for the part of Stripe's API the rater uses, on a real HTTP port (127.0.0.1,
 * port 0), so stripe-node runs unmodified against it:
 *
 *   POST /v1/invoices               create a draft (pending_invoice_items_behavior include|exclude)
 *   GET  /v1/invoices               list (customer, created[gt|gte|lt|lte], limit, starting_after)
 *   GET  /v1/invoices/:id           retrieve
 *   POST /v1/invoices/:id/finalize  finalize a draft
 *   POST /v1/invoiceitems           create an item, on a draft (`invoice`) or pending
 *   GET  /v1/invoiceitems           list (customer, invoice, pending, limit, starting_after)
 *
 * Bodies are form-encoded the way stripe-node sends them (`a[b]=c`, `a[0]=x`); answers and
 * errors have Stripe's JSON shapes, so stripe-node raises its real error classes.
 *
 * Idempotency as Stripe documents it: a POST with an `Idempotency-Key` that was used before, on
 * the same endpoint with the same parameters, gets the saved response again (with
 * `Idempotent-Replayed: true`) and changes nothing; with other parameters or another endpoint it
 * gets a 400 `idempotency_error`. Only requests that executed are saved: a request rejected by
 * validation can be retried with the same key. `expireIdempotencyKeys()` forgets every key, as
 * Stripe does after 24 hours.
 *
 * Totals: an invoice's `subtotal`/`total` are the sum of its items. Finalizing sets `status:
 * 'open'` and a number; when the amount due is zero (total <= 0) or below Stripe's minimum charge,
 * Stripe marks the invoice paid at once and carries the amount to the customer's balance, and so
 * does this fake. No taxes, discounts or customer balances are modelled.
 *
 * Failures: `failNext(n, failure, match?)` makes the next `n` matching requests fail: with an
 * HTTP status (500, 503, 429, 409, 400, ...: Stripe-shaped error bodies), by dropping the
 * connection before the request runs (`'drop'`), or by running it and then dropping the
 * connection so the reply is lost (`'drop-after-commit'`).
 *
 * Every request is recorded (method, path, idempotency key, parsed body, status, whether it was
 * replayed or failed on purpose) for assertions.
 */

export type Failure = number | 'drop' | 'drop-after-commit';

export interface FailureMatch {
  method?: string;
  /** Exact path, or a RegExp tested against it (e.g. /\/finalize$/). */
  path?: string | RegExp;
  /** Only requests carrying this Idempotency-Key (e.g. one invoice line's item). */
  idempotencyKey?: string;
}

export interface RecordedRequest {
  method: string;
  path: string;
  query: Record<string, unknown>;
  idempotencyKey: string | undefined;
  body: Record<string, unknown>;
  /** HTTP status sent; 0 when the connection was dropped. */
  status: number;
  replayed: boolean;
  injected: Failure | undefined;
}

export interface FakeInvoiceItem {
  id: string;
  object: 'invoiceitem';
  amount: number;
  currency: string;
  customer: string;
  customer_account: null;
  date: number;
  description: string | null;
  discountable: boolean;
  discounts: string[];
  invoice: string | null;
  livemode: false;
  metadata: Record<string, string>;
  net_amount: number;
  parent: null;
  period: { start: number; end: number };
  pricing: null;
  proration: boolean;
  quantity: number;
  quantity_decimal: string;
  tax_rates: [];
  test_clock: null;
}

export interface FakeInvoice {
  id: string;
  object: 'invoice';
  amount_due: number;
  amount_overpaid: number;
  amount_paid: number;
  amount_remaining: number;
  attempt_count: number;
  attempted: boolean;
  auto_advance: boolean;
  billing_reason: 'manual';
  collection_method: string;
  created: number;
  currency: string;
  customer: string;
  days_until_due: number | null;
  description: string | null;
  due_date: number | null;
  ending_balance: number | null;
  livemode: false;
  metadata: Record<string, string>;
  number: string | null;
  period_end: number;
  period_start: number;
  starting_balance: number;
  status: 'draft' | 'open' | 'paid' | 'uncollectible' | 'void';
  status_transitions: { finalized_at: number | null; marked_uncollectible_at: number | null; paid_at: number | null; voided_at: number | null };
  subtotal: number;
  subtotal_excluding_tax: number;
  total: number;
  total_excluding_tax: number;
}

interface SavedResponse {
  method: string;
  path: string;
  fingerprint: string;
  status: number;
  body: unknown;
}

interface PendingFailure {
  remaining: number;
  failure: Failure;
  match: FailureMatch | undefined;
}

class StripeHttpError extends Error {
  constructor(
    readonly status: number,
    readonly error: Record<string, unknown>,
  ) {
    super(String(error.message));
  }
}

/** Stripe's minimum charge per currency, in minor units (https://docs.stripe.com/currencies#minimum-and-maximum-charge-amounts); 50 otherwise. */
const MINIMUM_CHARGE_MINOR: Record<string, number> = { usd: 50, eur: 50, gbp: 30, jpy: 50, chf: 50, cad: 50, aud: 50, sek: 300, nok: 300, dkk: 250 };

const invalid = (message: string, param?: string, code?: string): StripeHttpError =>
  new StripeHttpError(400, { type: 'invalid_request_error', message, ...(param ? { param } : {}), ...(code ? { code } : {}) });
const missing = (what: string, id: string, param: string): StripeHttpError =>
  new StripeHttpError(404, { type: 'invalid_request_error', code: 'resource_missing', message: `No such ${what}: '${id}'`, param });

/**
 * Parses a form body or query string as Stripe does: `a[b][c]=v` nests, objects whose keys are
 * 0..n-1 become arrays, an empty value stays the empty string.
 */
export function parseStripeForm(text: string): Record<string, unknown> {
  const root: Record<string, unknown> = {};
  for (const [key, value] of new URLSearchParams(text)) {
    const m = /^([^[\]]+)((?:\[[^[\]]*\])*)$/.exec(key);
    if (!m) throw invalid(`Invalid parameter name: ${key}`);
    const path = [m[1]!, ...[...m[2]!.matchAll(/\[([^[\]]*)\]/g)].map((x) => x[1]!)];
    let node = root;
    for (let i = 0; i < path.length - 1; i++) {
      const k = path[i]!;
      const child = node[k];
      if (child === undefined) node[k] = {};
      else if (typeof child !== 'object' || child === null) throw invalid(`Invalid hash: ${path.slice(0, i + 1).join('.')}`, path[0]);
      node = node[k] as Record<string, unknown>;
    }
    node[path.at(-1)!] = value;
  }
  return arraysFromIndexedObjects(root) as Record<string, unknown>;
}

function arraysFromIndexedObjects(v: unknown): unknown {
  if (typeof v !== 'object' || v === null) return v;
  const o = v as Record<string, unknown>;
  const keys = Object.keys(o);
  for (const k of keys) o[k] = arraysFromIndexedObjects(o[k]);
  if (keys.length > 0 && keys.every((k, i) => k === String(i))) return keys.map((k) => o[k]);
  return o;
}

/** Canonical form of parameters, for comparing an idempotent retry with the first request. */
function fingerprint(body: Record<string, unknown>): string {
  const canon = (v: unknown): unknown =>
    typeof v === 'object' && v !== null && !Array.isArray(v)
      ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, canon((v as Record<string, unknown>)[k])]))
      : Array.isArray(v)
        ? v.map(canon)
        : v;
  return createHash('sha256').update(JSON.stringify(canon(body))).digest('hex');
}

function str(body: Record<string, unknown>, key: string): string | undefined {
  const v = body[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'string') throw invalid(`Invalid string: ${key}`, key);
  return v;
}

function int(body: Record<string, unknown>, key: string): number | undefined {
  const v = str(body, key);
  if (v === undefined) return undefined;
  if (!/^-?\d+$/.test(v) || !Number.isSafeInteger(Number(v))) throw invalid(`Invalid integer: ${v}`, key);
  return Number(v);
}

function bool(body: Record<string, unknown>, key: string): boolean | undefined {
  const v = str(body, key);
  if (v === undefined) return undefined;
  if (v !== 'true' && v !== 'false') throw invalid(`Invalid boolean: ${v}`, key);
  return v === 'true';
}

function metadataOf(body: Record<string, unknown>): Record<string, string> {
  const m = body.metadata;
  if (m === undefined || m === '') return {};
  if (typeof m !== 'object' || m === null || Array.isArray(m)) throw invalid('Invalid hash', 'metadata');
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(m)) {
    if (typeof v !== 'string') throw invalid(`Invalid metadata value for ${k}`, `metadata[${k}]`);
    if (k.length > 40) throw invalid(`Metadata keys can have up to 40 characters: ${k}`, `metadata[${k}]`);
    if (v.length > 500) throw invalid(`Metadata values can have up to 500 characters, but the value for ${k} has ${v.length}`, `metadata[${k}]`);
    if (v !== '') out[k] = v;
  }
  return out;
}

function currencyOf(body: Record<string, unknown>): string | undefined {
  const c = str(body, 'currency');
  if (c === undefined) return undefined;
  if (!/^[a-zA-Z]{3}$/.test(c)) throw invalid(`Invalid currency: ${c}. Stripe currently supports these currencies: usd, eur, gbp, jpy, ...`, 'currency');
  return c.toLowerCase();
}

const nowSeconds = (): number => Math.floor(Date.now() / 1000);
const ALPHANUM = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
/** Stripe-looking id: prefix, underscore, 14 alphanumerics. */
const newId = (prefix: string): string => `${prefix}_${[...randomBytes(14)].map((b) => ALPHANUM[b % 62]).join('')}`;

export class FakeStripe {
  readonly requests: RecordedRequest[] = [];
  private readonly customers = new Set<string>();
  private readonly invoiceMap = new Map<string, FakeInvoice>();
  private readonly itemMap = new Map<string, FakeInvoiceItem>();
  private readonly saved = new Map<string, SavedResponse>();
  private readonly failures: PendingFailure[] = [];
  private readonly sockets = new Set<Socket>();
  private invoiceNumber = 0;
  private createdSeq = 0;

  private constructor(private readonly server: Server) {}

  /** Starts a fake on 127.0.0.1 and a free port. */
  static async start(): Promise<FakeStripe> {
    const server = createServer();
    const fake = new FakeStripe(server);
    server.on('request', (req, res) => {
      fake.handle(req, res).catch(() => res.destroy());
    });
    server.on('connection', (s) => {
      fake.sockets.add(s);
      s.on('close', () => fake.sockets.delete(s));
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    return fake;
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  /** Base URL, e.g. for STRIPE_API_BASE. */
  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  /** Registers a customer (Stripe answers 400 "No such customer" for any other id). */
  createCustomer(id: string = newId('cus')): string {
    this.customers.add(id);
    return id;
  }

  /** The next `n` requests matching `match` (all requests when omitted) fail with `failure`. */
  failNext(n: number, failure: Failure, match?: FailureMatch): void {
    this.failures.push({ remaining: n, failure, match });
  }

  /** Forgets every idempotency key, as Stripe does 24 hours after first use. */
  expireIdempotencyKeys(): void {
    this.saved.clear();
  }

  invoices(): FakeInvoice[] {
    return [...this.invoiceMap.values()].map((i) => structuredClone(i));
  }

  invoiceItems(): FakeInvoiceItem[] {
    return [...this.itemMap.values()].map((i) => structuredClone(i));
  }

  invoice(id: string): FakeInvoice | undefined {
    const inv = this.invoiceMap.get(id);
    return inv && structuredClone(inv);
  }

  /** Changes a stored invoice behind the API's back (what a Dashboard edit or a bug in Stripe would look like). */
  tamperInvoice(id: string, patch: Partial<Pick<FakeInvoice, 'total' | 'currency' | 'status' | 'metadata'>>): void {
    const inv = this.invoiceMap.get(id);
    if (!inv) throw new Error(`no invoice ${id}`);
    Object.assign(inv, patch);
  }

  /** Requests that reached the API and were not dropped or failed on purpose (what Stripe's request log shows). */
  handled(method?: string, path?: string | RegExp): RecordedRequest[] {
    return this.requests.filter((r) => r.injected === undefined && (method === undefined || r.method === method) && matchesPath(r.path, path));
  }

  private takeFailure(method: string, path: string, idempotencyKey: string | undefined): Failure | undefined {
    for (const f of this.failures) {
      if (f.remaining <= 0) continue;
      if (f.match?.method !== undefined && f.match.method !== method) continue;
      if (f.match?.idempotencyKey !== undefined && f.match.idempotencyKey !== idempotencyKey) continue;
      if (!matchesPath(path, f.match?.path)) continue;
      f.remaining--;
      return f.failure;
    }
    return undefined;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const url = new URL(req.url ?? '/', 'http://fake');
    const method = req.method ?? 'GET';
    const path = url.pathname;
    const idempotencyKey = headerOf(req, 'idempotency-key');
    const rec: RecordedRequest = { method, path, query: {}, idempotencyKey, body: {}, status: 0, replayed: false, injected: undefined };
    this.requests.push(rec);
    const send = (status: number, body: unknown, extra: Record<string, string> = {}): void => {
      rec.status = status;
      const text = JSON.stringify(body);
      res.writeHead(status, {
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(text),
        'request-id': newId('req'),
        'stripe-version': headerOf(req, 'stripe-version') ?? '',
        ...(idempotencyKey ? { 'idempotency-key': idempotencyKey } : {}),
        ...extra,
      });
      res.end(text);
    };
    const sendError = (e: StripeHttpError): void => send(e.status, { error: { ...e.error, request_log_url: `https://dashboard.stripe.com/test/logs/${newId('req')}` } });
    const drop = (): void => {
      rec.status = 0;
      req.socket.destroy();
    };

    try {
      rec.query = parseStripeForm(url.search.slice(1));
      rec.body = parseStripeForm(Buffer.concat(chunks).toString('utf8'));
    } catch (e) {
      if (e instanceof StripeHttpError) return sendError(e);
      throw e;
    }

    const failure = this.takeFailure(method, path, idempotencyKey);
    rec.injected = failure;
    if (failure === 'drop') return drop();
    if (typeof failure === 'number') return sendError(injectedError(failure));

    if (!/^Bearer sk_(test|live)_\w+$/.test(headerOf(req, 'authorization') ?? '')) {
      return sendError(new StripeHttpError(401, { type: 'invalid_request_error', message: 'Invalid API Key provided' }));
    }

    // Idempotency: replay, or refuse a reused key with other parameters.
    const fp = fingerprint(rec.body);
    if (method === 'POST' && idempotencyKey !== undefined) {
      const prev = this.saved.get(idempotencyKey);
      if (prev) {
        if (prev.method !== method || prev.path !== path || prev.fingerprint !== fp) {
          return sendError(
            new StripeHttpError(400, {
              type: 'idempotency_error',
              message: `Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '${idempotencyKey}' if you meant to execute a different request.`,
            }),
          );
        }
        rec.replayed = true;
        if (failure === 'drop-after-commit') return drop();
        return send(prev.status, prev.body, { 'idempotent-replayed': 'true' });
      }
    }

    let status: number;
    let body: unknown;
    try {
      body = this.route(method, path, rec.query, rec.body);
      status = 200;
    } catch (e) {
      if (e instanceof StripeHttpError) return sendError(e);
      return sendError(new StripeHttpError(500, { type: 'api_error', message: `fake-stripe bug: ${(e as Error).message}` }));
    }
    if (method === 'POST' && idempotencyKey !== undefined) this.saved.set(idempotencyKey, { method, path, fingerprint: fp, status, body });
    if (failure === 'drop-after-commit') return drop();
    send(status, body);
  }

  private route(method: string, path: string, query: Record<string, unknown>, body: Record<string, unknown>): unknown {
    let m: RegExpExecArray | null;
    if (method === 'POST' && path === '/v1/invoices') return this.createInvoice(body);
    if (method === 'GET' && path === '/v1/invoices') return this.list('/v1/invoices', this.listInvoices(query), query);
    if (method === 'GET' && (m = /^\/v1\/invoices\/([^/]+)$/.exec(path))) return this.getInvoice(decodeURIComponent(m[1]!));
    if (method === 'POST' && (m = /^\/v1\/invoices\/([^/]+)\/finalize$/.exec(path))) return this.finalize(decodeURIComponent(m[1]!), body);
    if (method === 'POST' && path === '/v1/invoiceitems') return this.createItem(body);
    if (method === 'GET' && path === '/v1/invoiceitems') return this.list('/v1/invoiceitems', this.listItems(query), query);
    throw new StripeHttpError(404, { type: 'invalid_request_error', message: `Unrecognized request URL (${method}: ${path}).` });
  }

  private createInvoice(body: Record<string, unknown>): unknown {
    const customer = str(body, 'customer');
    if (customer === undefined) throw invalid('Missing required param: customer.', 'customer');
    if (!this.customers.has(customer)) throw invalid(`No such customer: '${customer}'`, 'customer', 'resource_missing');
    const collection = str(body, 'collection_method') ?? 'charge_automatically';
    if (collection !== 'charge_automatically' && collection !== 'send_invoice') throw invalid(`Invalid collection_method: ${collection}`, 'collection_method');
    const daysUntilDue = int(body, 'days_until_due');
    if (collection === 'send_invoice' && daysUntilDue === undefined && body.due_date === undefined) {
      throw invalid('Invoices with `collection_method=send_invoice` must have a `due_date` or `days_until_due`.', 'days_until_due');
    }
    const pending = str(body, 'pending_invoice_items_behavior') ?? 'exclude';
    if (pending !== 'include' && pending !== 'exclude') throw invalid(`Invalid pending_invoice_items_behavior: ${pending}`, 'pending_invoice_items_behavior');
    const created = this.nextCreated();
    const inv: FakeInvoice = {
      id: newId('in'),
      object: 'invoice',
      amount_due: 0,
      amount_overpaid: 0,
      amount_paid: 0,
      amount_remaining: 0,
      attempt_count: 0,
      attempted: false,
      auto_advance: bool(body, 'auto_advance') ?? collection === 'charge_automatically',
      billing_reason: 'manual',
      collection_method: collection,
      created,
      currency: currencyOf(body) ?? 'usd',
      customer,
      days_until_due: daysUntilDue ?? null,
      description: str(body, 'description') ?? null,
      due_date: null,
      ending_balance: null,
      livemode: false,
      metadata: metadataOf(body),
      number: null,
      period_end: created,
      period_start: created,
      starting_balance: 0,
      status: 'draft',
      status_transitions: { finalized_at: null, marked_uncollectible_at: null, paid_at: null, voided_at: null },
      subtotal: 0,
      subtotal_excluding_tax: 0,
      total: 0,
      total_excluding_tax: 0,
    };
    this.invoiceMap.set(inv.id, inv);
    if (pending === 'include') {
      for (const item of this.itemMap.values()) {
        if (item.customer === customer && item.invoice === null && item.currency === inv.currency) item.invoice = inv.id;
      }
    }
    this.recompute(inv);
    return this.invoiceJson(inv);
  }

  private createItem(body: Record<string, unknown>): unknown {
    const invoiceId = str(body, 'invoice');
    const inv = invoiceId === undefined ? undefined : this.invoiceMap.get(invoiceId);
    if (invoiceId !== undefined && !inv) throw invalid(`No such invoice: '${invoiceId}'`, 'invoice', 'resource_missing');
    const customer = str(body, 'customer') ?? inv?.customer;
    if (customer === undefined) throw invalid('Missing required param: customer.', 'customer');
    if (!this.customers.has(customer)) throw invalid(`No such customer: '${customer}'`, 'customer', 'resource_missing');
    const amount = int(body, 'amount');
    if (amount === undefined) throw invalid('Missing required param: amount.', 'amount');
    const currency = currencyOf(body) ?? inv?.currency;
    if (currency === undefined) throw invalid('Missing required param: currency.', 'currency');
    if (inv) {
      if (inv.customer !== customer) throw invalid(`The invoice ${inv.id} belongs to customer ${inv.customer}, not ${customer}.`, 'invoice');
      if (inv.status !== 'draft') throw invalid(`You can only add invoice items to draft invoices; invoice ${inv.id} is ${inv.status}.`, 'invoice', 'invoice_not_editable');
      if (inv.currency !== currency) throw invalid(`The currency of this invoice item (${currency}) must match the currency of the invoice (${inv.currency}).`, 'currency');
      const count = [...this.itemMap.values()].filter((i) => i.invoice === inv.id).length;
      if (count >= 250) throw invalid('An invoice can have at most 250 invoice items.', 'invoice');
    }
    let period = { start: nowSeconds(), end: nowSeconds() };
    if (body.period !== undefined) {
      const p = body.period as Record<string, unknown>;
      const start = int(p, 'start');
      const end = int(p, 'end');
      if (start === undefined || end === undefined) throw invalid('Missing required param: period[start] and period[end].', 'period');
      if (end < start) throw invalid('The period end must be greater than or equal to the period start.', 'period[end]');
      period = { start, end };
    }
    const item: FakeInvoiceItem = {
      id: newId('ii'),
      object: 'invoiceitem',
      amount,
      currency,
      customer,
      customer_account: null,
      date: nowSeconds(),
      description: str(body, 'description') ?? null,
      discountable: bool(body, 'discountable') ?? amount >= 0,
      discounts: [],
      invoice: inv?.id ?? null,
      livemode: false,
      metadata: metadataOf(body),
      net_amount: amount,
      parent: null,
      period,
      pricing: null,
      proration: false,
      quantity: 1,
      quantity_decimal: '1',
      tax_rates: [],
      test_clock: null,
    };
    this.itemMap.set(item.id, item);
    if (inv) this.recompute(inv);
    return structuredClone(item);
  }

  private getInvoice(id: string): unknown {
    const inv = this.invoiceMap.get(id);
    if (!inv) throw missing('invoice', id, 'id');
    return this.invoiceJson(inv);
  }

  private finalize(id: string, _body: Record<string, unknown>): unknown {
    const inv = this.invoiceMap.get(id);
    if (!inv) throw missing('invoice', id, 'invoice');
    if (inv.status !== 'draft') throw invalid(`This invoice is already finalized, you can't re-finalize a non-draft invoice.`, undefined, 'invoice_not_editable');
    this.recompute(inv);
    const now = nowSeconds();
    inv.number = `FAKE-${String(++this.invoiceNumber).padStart(4, '0')}`;
    inv.status = 'open';
    inv.status_transitions.finalized_at = now;
    inv.amount_due = Math.max(inv.total, 0);
    inv.amount_remaining = inv.amount_due;
    inv.ending_balance = 0;
    if (inv.collection_method === 'send_invoice' && inv.days_until_due !== null) inv.due_date = now + inv.days_until_due * 86_400;
    if (inv.total <= 0 || inv.amount_due < (MINIMUM_CHARGE_MINOR[inv.currency] ?? 50)) {
      // Nothing (or less than the minimum charge) to collect: paid at once, the rest to the customer's balance.
      inv.status = 'paid';
      inv.status_transitions.paid_at = now;
      inv.ending_balance = inv.total;
      inv.amount_remaining = 0;
    }
    return this.invoiceJson(inv);
  }

  private listInvoices(query: Record<string, unknown>): FakeInvoice[] {
    const customer = str(query, 'customer');
    const created = query.created;
    return [...this.invoiceMap.values()]
      .filter((i) => customer === undefined || i.customer === customer)
      .filter((i) => matchesRange(i.created, created))
      .sort((a, b) => b.created - a.created)
      .map((i) => this.invoiceJson(i));
  }

  private listItems(query: Record<string, unknown>): FakeInvoiceItem[] {
    const customer = str(query, 'customer');
    const invoice = str(query, 'invoice');
    const pending = bool(query, 'pending');
    return [...this.itemMap.values()]
      .filter((i) => customer === undefined || i.customer === customer)
      .filter((i) => invoice === undefined || i.invoice === invoice)
      .filter((i) => pending === undefined || (i.invoice === null) === pending)
      .reverse()
      .map((i) => structuredClone(i));
  }

  private list<T extends { id: string }>(url: string, all: T[], query: Record<string, unknown>): unknown {
    const limit = int(query, 'limit') ?? 10;
    if (limit < 1 || limit > 100) throw invalid('limit must be between 1 and 100', 'limit');
    const after = str(query, 'starting_after');
    let start = 0;
    if (after !== undefined) {
      const i = all.findIndex((x) => x.id === after);
      if (i < 0) throw invalid(`No such object: '${after}'`, 'starting_after', 'resource_missing');
      start = i + 1;
    }
    const data = all.slice(start, start + limit);
    return { object: 'list', data, has_more: start + limit < all.length, url };
  }

  private recompute(inv: FakeInvoice): void {
    if (inv.status !== 'draft') return;
    const sum = [...this.itemMap.values()].filter((i) => i.invoice === inv.id).reduce((s, i) => s + i.amount, 0);
    inv.subtotal = inv.subtotal_excluding_tax = inv.total = inv.total_excluding_tax = sum;
    inv.amount_due = inv.amount_remaining = Math.max(sum, 0);
  }

  private invoiceJson(inv: FakeInvoice): FakeInvoice & { lines: unknown } {
    const lines = [...this.itemMap.values()]
      .filter((i) => i.invoice === inv.id)
      .map((i) => ({
        id: `il_${i.id.slice(3)}`,
        object: 'line_item',
        amount: i.amount,
        currency: i.currency,
        description: i.description,
        invoice: inv.id,
        metadata: i.metadata,
        period: i.period,
        parent: { type: 'invoice_item_details', invoice_item_details: { invoice_item: i.id, proration: false } },
      }));
    return { ...structuredClone(inv), lines: { object: 'list', data: lines, has_more: false, url: `/v1/invoices/${inv.id}/lines` } };
  }

  /** Strictly increasing `created`, so lists have a stable newest-first order. */
  private nextCreated(): number {
    this.createdSeq = Math.max(this.createdSeq + 1, nowSeconds());
    return this.createdSeq;
  }
}

function headerOf(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

function matchesPath(path: string, want: string | RegExp | undefined): boolean {
  if (want === undefined) return true;
  return typeof want === 'string' ? path === want : want.test(path);
}

function matchesRange(value: number, range: unknown): boolean {
  if (range === undefined) return true;
  if (typeof range === 'string') return value === Number(range);
  const r = range as Record<string, string>;
  if (r.gt !== undefined && !(value > Number(r.gt))) return false;
  if (r.gte !== undefined && !(value >= Number(r.gte))) return false;
  if (r.lt !== undefined && !(value < Number(r.lt))) return false;
  if (r.lte !== undefined && !(value <= Number(r.lte))) return false;
  return true;
}

/** The body Stripe sends with `status`. */
function injectedError(status: number): StripeHttpError {
  if (status === 429) {
    return new StripeHttpError(429, { type: 'invalid_request_error', code: 'rate_limit', message: 'Request rate limit exceeded. Learn more about rate limits here https://stripe.com/docs/rate-limits.' });
  }
  if (status === 409) {
    return new StripeHttpError(409, { type: 'idempotency_error', message: 'There is currently another in-progress request using this Idempotent Key (that probably means you submitted twice, and the other request is still going through). Please try again later.' });
  }
  if (status >= 500) return new StripeHttpError(status, { type: 'api_error', message: 'An unknown error occurred' });
  return new StripeHttpError(status, { type: 'invalid_request_error', message: `Injected ${status}` });
}
