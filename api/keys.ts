import { createHash, randomBytes, randomUUID } from 'node:crypto';
import type { CatalogReplica } from '../common/catalog.ts';

/** API key scopes. `admin` implies every other scope. */
export const Scopes = ['ingest', 'read', 'billing', 'admin'] as const;
export type Scope = (typeof Scopes)[number];

export interface ApiKeyRecord {
  id: string;
  name: string;
  scopes: Scope[];
  /** First characters of the key, to recognise it in listings. */
  prefix: string;
  createdAt: string;
}

export function hashKey(key: string): string {
  return createHash('sha256').update(key).digest('hex');
}

export function hasScope(record: Pick<ApiKeyRecord, 'scopes'>, needed: Scope): boolean {
  return record.scopes.includes('admin') || record.scopes.includes(needed);
}

/**
 * API keys, stored in the catalog bucket under the SHA-256 of the key: the key itself is shown
 * once, when it is created, and never stored.
 */
export class ApiKeys {
  constructor(private readonly replica: CatalogReplica<ApiKeyRecord>) {}

  async create(name: string, scopes: Scope[]): Promise<{ key: string; record: ApiKeyRecord }> {
    const key = `ml_${randomBytes(24).toString('base64url')}`;
    const record: ApiKeyRecord = { id: randomUUID(), name, scopes: [...new Set(scopes)], prefix: key.slice(0, 8), createdAt: new Date().toISOString() };
    await this.replica.create(hashKey(key), record);
    return { key, record };
  }

  /** The key's record, from the in-memory replica (no I/O on the request path). Lookup is by hash. */
  verify(key: string): ApiKeyRecord | undefined {
    return this.replica.get(hashKey(key));
  }

  list(): ApiKeyRecord[] {
    return this.replica.list().sort((a, b) => a.createdAt.localeCompare(b.createdAt));
  }

  async revoke(id: string): Promise<boolean> {
    const entry = this.replica.listEntries().find(([, r]) => r.id === id);
    if (!entry) return false;
    await this.replica.delete(entry[0]);
    return true;
  }
}
