import type { KV } from '@nats-io/kv';
import { AppError } from '../common/errors.ts';

/** Invoice numbers: consecutive, never reused, e.g. "ML-2026-000042". */
export interface InvoiceNumbering {
  /** Allocates `count` consecutive numbers for invoices whose period ends in `year` (UTC). */
  allocate(year: number, count: number): Promise<string[]>;
}

/** Invoice numbers from one counter in the catalog bucket (NATS KV), taken with compare-and-set. */
export class KvInvoiceNumbering implements InvoiceNumbering {
  constructor(
    private readonly kv: KV,
    private readonly prefix: string,
  ) {}

  /** Allocates `count` consecutive invoice numbers with one compare-and-set on the catalog counter. */
  async allocate(year: number, count: number): Promise<string[]> {
    const key = 'counter.invoice';
    for (let attempt = 0; attempt < 20; attempt++) {
      const e = await this.kv.get(key);
      const first = e && e.operation === 'PUT' ? Number(e.string()) + 1 : 1;
      const last = first + count - 1;
      try {
        if (e && e.operation === 'PUT') await this.kv.update(key, String(last), e.revision);
        else await this.kv.create(key, String(last));
        return Array.from({ length: count }, (_, i) => `${this.prefix}-${year}-${String(first + i).padStart(6, '0')}`);
      } catch {
        /* someone else took these numbers: read again */
      }
    }
    throw new AppError('CATALOG_CONFLICT', 'could not allocate invoice numbers; retry');
  }
}
