import { KvWatchInclude, type KV } from '@nats-io/kv';
import { AppError } from './errors.ts';
import type { Logger } from './logger.ts';

/**
 * In-memory replica of one key prefix of the catalog bucket (NATS KV). Every process keeps
 * one per entity kind by watching KV, so a meter created through any API process is seen by
 * every processor without a restart. Writes go through KV with the revision for optimistic
 * concurrency: `create` fails if the key exists, `update` fails if someone else wrote first.
 */
export interface Versioned<T> {
  value: T;
  revision: number;
}

export interface KeyCodec {
  encode(key: string): string;
  decode(kvKey: string): string;
}

const IDENTITY: KeyCodec = { encode: (k) => k, decode: (k) => k };

/** base64url: any string becomes a valid KV key token. */
export const BASE64URL_KEYS: KeyCodec = {
  encode: (k) => Buffer.from(k, 'utf8').toString('base64url') || '_',
  decode: (k) => (k === '_' ? '' : Buffer.from(k, 'base64url').toString('utf8')),
};

export type ChangeListener<T> = (key: string, next: T | undefined, prev: T | undefined) => void;

export class CatalogReplica<T> {
  private readonly entries = new Map<string, Versioned<T>>();
  private readonly listeners = new Set<ChangeListener<T>>();
  private stopWatch: (() => void) | undefined;

  constructor(
    private readonly kv: KV,
    private readonly prefix: string,
    private readonly logger: Logger,
    /** Keys that KV does not allow (any characters, e.g. customer keys) are stored encoded. */
    private readonly codec: KeyCodec = IDENTITY,
  ) {}

  private kvKey(key: string): string {
    return `${this.prefix}.${this.codec.encode(key)}`;
  }

  /** Loads the current values and keeps following changes; resolves once the replica is current. */
  async start(): Promise<void> {
    const watcher = await this.kv.watch({ key: `${this.prefix}.>`, include: KvWatchInclude.LastValue });
    this.stopWatch = () => watcher.stop();
    let resolveReady!: () => void;
    const ready = new Promise<void>((r) => (resolveReady = r));
    // An empty prefix delivers nothing: a probe tells us whether to wait for initial values.
    const initial = await this.countKeys();
    if (initial === 0) resolveReady();
    void (async () => {
      for await (const e of watcher) {
        const key = this.codec.decode(e.key.slice(this.prefix.length + 1));
        const current = this.entries.get(key);
        const prev = current?.value;
        if (current && current.revision >= e.revision) {
          // Already applied by our own `create` (or a stale delete of an older revision,
          // e.g. the delete before a re-create): applying it again would hide the newer value.
        } else if (e.operation === 'PUT') {
          try {
            const value = e.json<T>();
            this.entries.set(key, { value, revision: e.revision });
            this.emit(key, value, prev);
          } catch (err) {
            this.logger.error({ err, key: e.key }, 'catalog entry is not valid JSON; ignored');
          }
        } else {
          this.entries.delete(key);
          this.emit(key, undefined, prev);
        }
        // delta is the number of entries still pending: 0 means the replica has caught up.
        if ((e.delta ?? 0) === 0) resolveReady();
      }
    })();
    await ready;
  }

  private async countKeys(): Promise<number> {
    const it = await this.kv.keys(`${this.prefix}.>`);
    let n = 0;
    for await (const _ of it) n++;
    return n;
  }

  private emit(key: string, next: T | undefined, prev: T | undefined) {
    for (const l of this.listeners) {
      try {
        l(key, next, prev);
      } catch (err) {
        this.logger.error({ err }, 'catalog listener failed');
      }
    }
  }

  onChange(listener: ChangeListener<T>): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  get(key: string): T | undefined {
    return this.entries.get(key)?.value;
  }

  list(): T[] {
    return [...this.entries.values()].map((e) => e.value);
  }

  /** Key and value of every entry. */
  listEntries(): [string, T][] {
    return [...this.entries].map(([k, e]) => [k, e.value]);
  }

  /** Reads through to KV (not the replica): the answer right after a write by another process. */
  async getFresh(key: string): Promise<Versioned<T> | undefined> {
    const e = await this.kv.get(this.kvKey(key));
    if (!e || e.operation !== 'PUT') return undefined;
    return { value: e.json<T>(), revision: e.revision };
  }

  /** Creates the key; throws CATALOG_CONFLICT if it already exists. */
  async create(key: string, value: T): Promise<number> {
    try {
      const rev = await this.kv.create(this.kvKey(key), JSON.stringify(value));
      // Listeners hear of our own write now, whether or not the watcher delivered it first
      // (a processor backfills a new meter on this change; it must not depend on timing).
      const current = this.entries.get(key);
      if (!current || current.revision < rev) {
        this.entries.set(key, { value, revision: rev });
        this.emit(key, value, current?.value);
      }
      return rev;
    } catch (err) {
      if (/wrong last sequence|exists/i.test(String(err))) {
        throw new AppError('CATALOG_CONFLICT', `${this.prefix} "${key}" already exists`, { cause: err });
      }
      throw err;
    }
  }

  async update(key: string, value: T, revision: number): Promise<number> {
    try {
      return await this.kv.update(this.kvKey(key), JSON.stringify(value), revision);
    } catch (err) {
      if (/wrong last sequence/i.test(String(err))) {
        throw new AppError('CATALOG_CONFLICT', `${this.prefix} "${key}" was changed by someone else; read it again and retry`, { cause: err });
      }
      throw err;
    }
  }

  async delete(key: string): Promise<void> {
    await this.kv.delete(this.kvKey(key));
    const prev = this.entries.get(key)?.value;
    if (this.entries.delete(key)) this.emit(key, undefined, prev);
  }

  stop(): void {
    this.stopWatch?.();
  }
}
