import { randomUUID } from 'node:crypto';
import { Kvm, type KV } from '@nats-io/kv';
import type { JetStreamClient } from '@nats-io/jetstream';
import type { Logger } from './logger.ts';

/** Held by `meterline repair` while it rewrites rows: processors insert nothing meanwhile. */
export const MAINTENANCE_LEASE = 'maintenance.writes';

/**
 * Leases in a NATS KV bucket whose entries expire after `ttlMs`: a holder that dies loses its
 * lease within `ttlMs`. Acquire is `create` (fails if someone holds it); renew is `update` with
 * the revision we hold (fails if we lost it). Used so that two schedulers never both run a
 * billing close.
 */
export class Leases {
  private constructor(
    private readonly kv: KV,
    readonly ttlMs: number,
    readonly holder: string,
  ) {}

  static async open(js: JetStreamClient, opts: { bucket?: string; ttlMs?: number; holder?: string; replicas?: number } = {}): Promise<Leases> {
    const ttlMs = opts.ttlMs ?? 30_000;
    const kv = await new Kvm(js).create(opts.bucket ?? 'meterline_leases', { ttl: ttlMs, history: 1, replicas: opts.replicas ?? 1 });
    return new Leases(kv, ttlMs, opts.holder ?? randomUUID());
  }

  /** Runs `fn` while holding `name`, renewing it; returns undefined if another holder has it. */
  async withLease<T>(name: string, fn: () => Promise<T>, logger?: Logger): Promise<{ ran: true; value: T } | { ran: false }> {
    let revision: number;
    try {
      revision = await this.kv.create(name, this.holder);
    } catch {
      return { ran: false };
    }
    let lost = false;
    const timer = setInterval(() => {
      this.kv.update(name, this.holder, revision).then(
        (r) => (revision = r),
        (err) => {
          lost = true;
          logger?.error({ err, lease: name }, 'lost a lease while holding it');
        },
      );
    }, Math.max(1_000, Math.floor(this.ttlMs / 3)));
    try {
      return { ran: true, value: await fn() };
    } finally {
      clearInterval(timer);
      if (!lost) await this.kv.delete(name, { previousSeq: revision }).catch(() => undefined);
    }
  }

  async holderOf(name: string): Promise<string | undefined> {
    const e = await this.kv.get(name);
    return e && e.operation === 'PUT' ? e.string() : undefined;
  }
}
