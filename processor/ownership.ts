import os from 'node:os';
import { Kvm, type KV } from '@nats-io/kv';
import type { JetStreamClient, JetStreamManager } from '@nats-io/jetstream';
import { kvKeys } from '../common/nats.ts';
import { errorMessage } from '../common/errors.ts';
import type { Logger } from '../common/logger.ts';

/** The unit of work a processor can own: a partition `0 … n-1`, or the router (`ROUTER`). */
export type Unit = number;
export const ROUTER: Unit = -1;

export const unitName = (u: Unit): string => (u === ROUTER ? 'router' : `partition.${u}`);

export interface OwnershipHandlers {
  /** Start working on `unit`; its lease is held. A rejection gives the lease back. */
  acquired(unit: Unit): Promise<void>;
  /**
   * Stop working on `unit`. `lost`: the lease is gone (another processor may already own it):
   * stop at once, store nothing more for it. `handover`/`stop`: finish what is in flight first;
   * the lease is deleted after this resolves, so the next owner starts where this one ended.
   */
  released(unit: Unit, reason: 'lost' | 'handover' | 'stop'): Promise<void>;
}

export interface OwnershipOptions {
  holder?: string;
  partitions: number;
  ttlMs: number;
  replicas: number;
  bucket?: string;
}

interface Held {
  revision: number;
  /** Local time the last successful renewal was sent: the lease is valid at least until this + ttl. */
  renewedAt: number;
}

/**
 * Which processor works on which partition, agreed through a NATS KV bucket whose entries
 * expire after `ttlMs`:
 *
 * - every processor writes `member.<id>` each tick (a third of the TTL); the live members are
 *   the keys that have not expired;
 * - a partition is owned through the key `partition.<n>` (created if absent, renewed each tick
 *   with the revision held, so only its holder can renew it); the router through `router`;
 * - each member aims at its fair share of the partitions (members sorted by id; the first
 *   `partitions % members` take one more): it takes free partitions while below, and hands
 *   partitions back while above. A member that dies stops renewing: within `ttlMs` its keys
 *   expire and the others take its partitions.
 *
 * `holds(unit)` is the fence a processor checks before writing: true only while the last
 * renewal is recent enough that no other member can have taken the lease.
 */
export class Ownership {
  readonly holder: string;
  private readonly held = new Map<Unit, Held>();
  private timer: NodeJS.Timeout | undefined;
  private renewing: Promise<void> | undefined;
  private balancing: Promise<void> | undefined;
  private stopped = false;

  private constructor(
    private readonly kv: KV,
    private readonly jsm: JetStreamManager,
    private readonly bucket: string,
    private readonly opts: OwnershipOptions,
    private readonly handlers: OwnershipHandlers,
    private readonly log: Logger,
  ) {
    this.holder = opts.holder ?? `${os.hostname().replace(/[^A-Za-z0-9_-]/g, '-').slice(0, 40)}-${process.pid}`;
  }

  static async open(js: JetStreamClient, opts: OwnershipOptions, handlers: OwnershipHandlers, logger: Logger): Promise<Ownership> {
    const bucket = opts.bucket ?? 'meterline_partitions';
    const kvm = new Kvm(js);
    let kv: KV;
    try {
      kv = await kvm.create(bucket, { ttl: opts.ttlMs, history: 1, replicas: opts.replicas });
    } catch (err) {
      // The bucket exists with another TTL or replica count (configuration changed): use it as it is.
      kv = await kvm.open(bucket);
      logger.warn({ err: errorMessage(err), bucket }, 'partition lease bucket exists with other settings; using it as it is');
    }
    return new Ownership(kv, await js.jetstreamManager(), bucket, opts, handlers, logger.child({ component: 'ownership', holder: opts.holder }));
  }

  get intervalMs(): number {
    return Math.max(250, Math.floor(this.opts.ttlMs / 3));
  }

  async start(): Promise<void> {
    await this.renew();
    // The timer first: taking the first partitions (repeating a crashed write, loading dedup
    // keys) can outlast a lease's TTL, and the ones already taken must be renewed meanwhile.
    this.timer = setInterval(() => {
      void this.renew();
      void this.rebalance();
    }, this.intervalMs);
    this.timer.unref();
    await this.rebalance();
  }

  /** True while this processor may write for `unit`: held, and renewed recently enough. */
  holds(unit: Unit, now = Date.now()): boolean {
    const h = this.held.get(unit);
    return h !== undefined && now < h.renewedAt + this.opts.ttlMs - this.intervalMs;
  }

  /** The partitions held now, in order. */
  partitions(): number[] {
    return [...this.held.keys()].filter((u) => u !== ROUTER).sort((a, b) => a - b);
  }

  /** Hands every unit back (finishing in-flight work) and leaves the membership. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    await this.balancing;
    await Promise.all([...this.held.keys()].map((u) => this.release(u, 'stop')));
    await this.kv.delete(`member.${this.holder}`).catch(() => undefined);
  }

  /**
   * Heartbeat and renewal of every lease held. Runs on its own, never behind a rebalance (which
   * may wait for a partition's dedup keys to load), so slow work never costs a lease.
   */
  renew(): Promise<void> {
    if (this.renewing) return this.renewing;
    this.renewing = (async () => {
      await this.kv.put(`member.${this.holder}`, String(Date.now()));
      await this.renewAll();
    })()
      .catch((err: unknown) => this.log.warn({ err: errorMessage(err) }, 'partition lease renewal failed; retrying next tick'))
      .finally(() => (this.renewing = undefined));
    return this.renewing;
  }

  /** Takes free partitions up to this member's fair share, or hands extras back. */
  rebalance(): Promise<void> {
    if (this.balancing || this.stopped) return this.balancing ?? Promise.resolve();
    this.balancing = this.balance()
      .catch((err: unknown) => this.log.warn({ err: errorMessage(err) }, 'partition rebalance failed; retrying next tick'))
      .finally(() => (this.balancing = undefined));
    return this.balancing;
  }

  private async balance(): Promise<void> {
    const members = await this.members();
    const rank = Math.max(0, members.indexOf(this.holder));
    const n = Math.max(1, members.length);
    const share = Math.floor(this.opts.partitions / n) + (rank < this.opts.partitions % n ? 1 : 0);
    const mine = this.partitions();
    if (mine.length > share) {
      // Hand back the highest-numbered extras; the members below their share take them.
      for (const u of mine.slice(share).reverse()) await this.release(u, 'handover');
    } else if (mine.length < share) {
      // Start looking where this member's share would begin, so members rarely race for one key.
      const start = Math.floor((rank * this.opts.partitions) / n);
      let count = mine.length;
      for (let i = 0; i < this.opts.partitions && count < share && !this.stopped; i++) {
        const u = (start + i) % this.opts.partitions;
        if (!this.held.has(u) && (await this.acquire(u))) count++;
      }
    }
    if (!this.held.has(ROUTER) && !this.stopped) await this.acquire(ROUTER);
  }

  private async members(): Promise<string[]> {
    const out: string[] = [];
    for (const k of await kvKeys(this.jsm, this.bucket, 'member.*')) {
      const e = await this.kv.get(k);
      if (e && e.operation === 'PUT') out.push(k.slice('member.'.length));
    }
    if (!out.includes(this.holder)) out.push(this.holder);
    return out.sort();
  }

  private async renewAll(): Promise<void> {
    await Promise.all(
      [...this.held].map(async ([u, h]) => {
        const sentAt = Date.now();
        try {
          h.revision = await this.kv.update(unitName(u), this.holder, h.revision);
          h.renewedAt = sentAt;
        } catch (err) {
          if (this.held.get(u) !== h) return;
          // A wrong revision means the key expired or someone else holds it now: the lease is lost.
          // Anything else (NATS briefly away) is retried; `holds` turns false if it lasts.
          if (/wrong last sequence|key not found|no message found/i.test(errorMessage(err)) || !this.holds(u)) {
            this.log.warn({ unit: unitName(u), err: errorMessage(err) }, 'lost a partition lease');
            this.held.delete(u);
            // Not awaited: renewing the other leases must not wait for this unit to wind down.
            void this.handlers.released(u, 'lost').catch((e: unknown) => this.log.error({ err: e }, 'release failed'));
          }
        }
      }),
    );
  }

  private async acquire(u: Unit): Promise<boolean> {
    const key = unitName(u);
    const sentAt = Date.now();
    let revision: number;
    try {
      revision = await this.kv.create(key, this.holder);
    } catch {
      // Ours from before a restart with the same PROCESSOR_ID? Then it is ours again.
      const e = await this.kv.get(key).catch(() => null);
      if (!e || e.operation !== 'PUT' || e.string() !== this.holder) return false;
      try {
        revision = await this.kv.update(key, this.holder, e.revision);
      } catch {
        return false;
      }
    }
    this.held.set(u, { revision, renewedAt: sentAt });
    this.log.info({ unit: key }, 'took a partition');
    try {
      await this.handlers.acquired(u);
    } catch (err) {
      this.log.error({ unit: key, err: errorMessage(err) }, 'could not start on a partition; giving it back');
      await this.release(u, 'handover');
      return false;
    }
    return true;
  }

  private async release(u: Unit, reason: 'handover' | 'stop'): Promise<void> {
    const h = this.held.get(u);
    if (!h) return;
    try {
      await this.handlers.released(u, reason);
    } finally {
      this.held.delete(u);
      await this.kv.delete(unitName(u), { previousSeq: h.revision }).catch(() => undefined);
      this.log.info({ unit: unitName(u), reason }, 'gave a partition back');
    }
  }
}
