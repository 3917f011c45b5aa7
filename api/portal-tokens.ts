import { randomBytes, randomUUID } from 'node:crypto';
import type { CatalogReplica } from '../common/catalog.ts';
import type { PortalTokenRecord } from './contracts.ts';
import { hashKey } from './keys.ts';

/** Every portal token starts with this; API keys start with `ml_`. */
export const PORTAL_TOKEN_PREFIX = 'mlp_';

/** The contract (./contracts.ts), shared with the browser code. */
export type { PortalTokenRecord } from './contracts.ts';

/**
 * Customer-portal tokens: bound to ONE customer, accepted only by the `/api/v1/portal/...`
 * routes. Stored like API keys, in the catalog bucket under the SHA-256 of the token (the
 * token itself is shown once, when it is created), so every API process verifies them from
 * its in-memory replica.
 */
export class PortalTokens {
  constructor(private readonly replica: CatalogReplica<PortalTokenRecord>) {}

  async create(input: { customer: string; name?: string; expiresAt?: string | null; createdBy: string }): Promise<{ token: string; record: PortalTokenRecord }> {
    const token = `${PORTAL_TOKEN_PREFIX}${randomBytes(24).toString('base64url')}`;
    const record: PortalTokenRecord = {
      id: randomUUID(),
      customer: input.customer,
      name: input.name ?? `portal for ${input.customer}`,
      prefix: token.slice(0, 9),
      createdAt: new Date().toISOString(),
      expiresAt: input.expiresAt ?? null,
      createdBy: input.createdBy,
    };
    await this.replica.create(hashKey(token), record);
    return { token, record };
  }

  /** The token's record if it exists and has not expired at `nowMs` (no I/O on the request path). */
  verify(token: string, nowMs: number): PortalTokenRecord | undefined {
    if (!token.startsWith(PORTAL_TOKEN_PREFIX)) return undefined;
    const r = this.replica.get(hashKey(token));
    if (!r) return undefined;
    if (r.expiresAt !== null && Date.parse(r.expiresAt) <= nowMs) return undefined;
    return r;
  }

  list(customer?: string): PortalTokenRecord[] {
    return this.replica
      .list()
      .filter((r) => !customer || r.customer === customer)
      .sort((a, b) => a.createdAt.localeCompare(b.createdAt));
  }

  async revoke(id: string): Promise<boolean> {
    const entry = this.replica.listEntries().find(([, r]) => r.id === id);
    if (!entry) return false;
    await this.replica.delete(entry[0]);
    return true;
  }
}
