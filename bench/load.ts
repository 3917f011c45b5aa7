import { Decimal } from '../common/decimal.ts';
import { seededRandom } from '../common/random.ts';

/**
 * The load generator: a realistic event mix, deterministic from a seed.
 *
 * - customers drawn from a Zipf distribution (s = 1.1) over `customers` keys;
 * - three event types feeding four meters (calls COUNT, tokens SUM with a model dimension,
 *   bytes SUM with a region dimension, users UNIQUE_COUNT);
 * - `duplicateRate` of events repeat an earlier event's (source, id) (a producer retry);
 * - `lateRate` of events carry an event time minutes to days in the past; the rest are spread
 *   over the last few minutes in shuffled order within a batch (out of order).
 *
 * It also keeps the exact expected totals per meter (over unique events only), so a run can
 * prove its totals, not just its speed.
 */
export interface LoadOptions {
  seed: number;
  customers: number;
  duplicateRate: number;
  lateRate: number;
  nowMs: number;
}

export interface CloudEvent {
  specversion: '1.0';
  id: string;
  source: string;
  type: string;
  subject: string;
  time: string;
  data: Record<string, unknown>;
}

export const BENCH_METERS = [
  { slug: 'calls', eventType: 'api.call', aggregation: 'COUNT' },
  { slug: 'tokens', eventType: 'llm.usage', aggregation: 'SUM', valueProperty: '$.tokens', groupBy: { model: '$.model' } },
  { slug: 'bytes', eventType: 'storage.write', aggregation: 'SUM', valueProperty: '$.bytes', groupBy: { region: '$.region' } },
  { slug: 'users', eventType: 'api.call', aggregation: 'UNIQUE_COUNT', valueProperty: '$.user' },
] as const;


export class LoadGenerator {
  private readonly rand: () => number;
  private readonly zipfCdf: number[];
  private n = 0;
  private readonly recent: CloudEvent[] = [];
  readonly expected = { calls: 0, tokens: new Decimal(0), bytes: new Decimal(0), users: new Set<string>(), unique: 0, sent: 0 };

  constructor(readonly opts: LoadOptions) {
    this.rand = seededRandom(opts.seed);
    const w = Array.from({ length: opts.customers }, (_, i) => 1 / (i + 1) ** 1.1);
    const sum = w.reduce((a, b) => a + b, 0);
    let acc = 0;
    this.zipfCdf = w.map((x) => (acc += x / sum));
  }

  private customer(): string {
    const r = this.rand();
    let lo = 0;
    let hi = this.zipfCdf.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.zipfCdf[mid]! < r) lo = mid + 1;
      else hi = mid;
    }
    return `cust-${lo}`;
  }

  next(): CloudEvent {
    this.expected.sent++;
    if (this.recent.length > 0 && this.rand() < this.opts.duplicateRate) {
      return this.recent[Math.floor(this.rand() * this.recent.length)]!;
    }
    const i = this.n++;
    const late = this.rand() < this.opts.lateRate;
    const ageMs = late ? 60_000 * (1 + Math.floor(this.rand() * 3 * 24 * 60)) : Math.floor(this.rand() * 120_000);
    const base = { specversion: '1.0' as const, id: `ev-${this.opts.seed}-${i}`, subject: this.customer(), time: new Date(this.opts.nowMs - ageMs).toISOString() };
    const kind = i % 3;
    let ev: CloudEvent;
    if (kind === 0) {
      const user = `u${Math.floor(this.rand() * 5000)}`;
      ev = { ...base, source: 'gateway', type: 'api.call', data: { user, endpoint: '/v1/search' } };
      this.expected.calls++;
      this.expected.users.add(`${base.subject}\u0000${user}`);
    } else if (kind === 1) {
      const tokens = `${Math.floor(this.rand() * 4000)}.${Math.floor(this.rand() * 100)}`;
      ev = { ...base, source: 'llm', type: 'llm.usage', data: { tokens, model: this.rand() < 0.7 ? 'small' : 'large' } };
      this.expected.tokens = this.expected.tokens.plus(tokens);
    } else {
      const bytes = 1 + Math.floor(this.rand() * 1_000_000);
      ev = { ...base, source: 'storage', type: 'storage.write', data: { bytes, region: this.rand() < 0.5 ? 'eu' : 'us' } };
      this.expected.bytes = this.expected.bytes.plus(bytes);
    }
    this.expected.unique++;
    this.recent.push(ev);
    if (this.recent.length > 5_000) this.recent.splice(0, 1_000);
    return ev;
  }

  batch(size: number): CloudEvent[] {
    const out = Array.from({ length: size }, () => this.next());
    // Out of order within a batch.
    for (let i = out.length - 1; i > 0; i--) {
      const j = Math.floor(this.rand() * (i + 1));
      [out[i], out[j]] = [out[j]!, out[i]!];
    }
    return out;
  }
}
