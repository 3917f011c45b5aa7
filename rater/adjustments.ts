import { randomUUID } from 'node:crypto';
import type { Store } from '../common/clickhouse.ts';

export interface Adjustment {
  id: string;
  customer: string;
  kind: 'credit' | 'charge' | 'usage_correction' | 'credit_grant';
  currency: string;
  amount: string;
  meter: string;
  quantity: string;
  periodStart: string | null;
  expiresAt: string | null;
  reasonCode: string;
  note: string;
  actor: string;
  createdAt: string;
}

/** Adjustments (the table `adjustments`): one-time credits and charges, usage corrections, prepaid credit grants. */
export interface AdjustmentStore {
  /** One customer's adjustments, or every customer's without `customer`; oldest first. */
  list(customer?: string): Promise<Adjustment[]>;
  /** Records an adjustment made now; returns it with its id and creation time. */
  add(a: Omit<Adjustment, 'id' | 'createdAt'>): Promise<Adjustment>;
}

const iso = (ms: number) => new Date(ms).toISOString();
const ms = (s: string) => Date.parse(s);

/** The AdjustmentStore over ClickHouse. */
export class ClickHouseAdjustments implements AdjustmentStore {
  constructor(private readonly store: Store) {}

  async list(customer?: string): Promise<Adjustment[]> {
    const rs = await this.store.ch.query({
      query: `SELECT id, customer, kind, currency, toString(amount) AS amount, meter, toString(quantity) AS quantity,
                if(isNull(period_start), NULL, toString(toUnixTimestamp64Milli(period_start))) AS ps,
                if(isNull(expires_at), NULL, toString(toUnixTimestamp64Milli(expires_at))) AS ea,
                reason_code, note, actor, toString(toUnixTimestamp64Milli(created_at)) AS ca
              FROM ${this.store.db}.adjustments WHERE ${customer === undefined ? '1' : 'customer = {customer:String}'} ORDER BY created_at, id`,
      query_params: customer === undefined ? {} : { customer },
      format: 'JSONEachRow',
    });
    const rows = await rs.json<Record<string, string | null>>();
    return rows.map((r) => ({
      id: r.id!,
      customer: r.customer!,
      kind: r.kind as Adjustment['kind'],
      currency: r.currency!,
      amount: r.amount!,
      meter: r.meter!,
      quantity: r.quantity!,
      periodStart: r.ps ? iso(Number(r.ps)) : null,
      expiresAt: r.ea ? iso(Number(r.ea)) : null,
      reasonCode: r.reason_code!,
      note: r.note!,
      actor: r.actor!,
      createdAt: iso(Number(r.ca)),
    }));
  }

  async add(a: Omit<Adjustment, 'id' | 'createdAt'>): Promise<Adjustment> {
    const adj: Adjustment = { ...a, id: `adj_${randomUUID().replaceAll('-', '').slice(0, 20)}`, createdAt: new Date().toISOString() };
    await this.store.ch.insert({
      table: `${this.store.db}.adjustments`,
      values: [
        {
          id: adj.id,
          customer: adj.customer,
          kind: adj.kind,
          currency: adj.currency,
          amount: adj.amount,
          meter: adj.meter,
          quantity: adj.quantity,
          period_start: adj.periodStart ? ms(adj.periodStart) : null,
          expires_at: adj.expiresAt ? ms(adj.expiresAt) : null,
          reason_code: adj.reasonCode,
          note: adj.note,
          actor: adj.actor,
          created_at: ms(adj.createdAt),
        },
      ],
      format: 'JSONEachRow',
    });
    return adj;
  }
}
