import { createHash } from 'node:crypto';
import type { Store } from '../common/clickhouse.ts';
import { AppError } from '../common/errors.ts';
import type { AnomalyKind, AnomalyRecord, Detection, Severity } from './types.ts';

export const AnomalyStatuses = ['open', 'acknowledged', 'resolved'] as const;
export type AnomalyStatus = (typeof AnomalyStatuses)[number];

/** A stored anomaly as the API returns it: the contract in ./types.ts, shared with the browser code. */
export type Anomaly = AnomalyRecord;

const iso = (ms: number) => new Date(ms).toISOString();

interface Row {
  id: string;
  customer: string;
  meter: string;
  kind: string;
  status: string;
  severity: string;
  score: number;
  ws: string;
  we: string;
  observed: number;
  baseline: number;
  spread: number;
  message: string;
  detail: string;
  detections: number;
  fda: string;
  lda: string;
  acknowledged_by: string;
  aa: string | null;
  resolved_by: string;
  ra: string | null;
  resolution_note: string;
}

/**
 * Anomalies in ClickHouse. Detection state is versioned (every update writes the whole row with a
 * higher version; reads take the latest); acknowledge and resolve are appended to
 * `anomaly_actions` and joined in, so the scan (one at a time, under a lease) and people
 * acting through the API never overwrite each other.
 */
export class AnomalyStore {
  private lastVersion = 0;

  constructor(private readonly store: Store) {}

  private get db() {
    return this.store.db;
  }

  /** Strictly increasing versions within this process, from the clock. */
  private version(): number {
    this.lastVersion = Math.max(Date.now() * 1000, this.lastVersion + 1);
    return this.lastVersion;
  }

  async list(filter: { customer?: string; meter?: string; kind?: string; status?: string; id?: string; limit?: number } = {}): Promise<Anomaly[]> {
    const where: string[] = ['1'];
    const params: Record<string, unknown> = { limit: filter.limit ?? 500 };
    for (const [col, v] of [
      ['customer', filter.customer],
      ['meter', filter.meter],
      ['kind', filter.kind],
      ['status', filter.status],
      ['id', filter.id],
    ] as const) {
      if (v === undefined) continue;
      where.push(`${col} = {${col}:String}`);
      params[col] = v;
    }
    const rs = await this.store.ch.query({
      query: `SELECT * FROM (
                SELECT a.id AS id, a.customer AS customer, a.meter AS meter, a.kind AS kind,
                  multiIf(x.resolved > 0, 'resolved', x.acked > 0, 'acknowledged', 'open') AS status,
                  a.severity AS severity, a.score AS score, toString(toUnixTimestamp64Milli(a.window_start)) AS ws, toString(toUnixTimestamp64Milli(a.window_end)) AS we,
                  a.observed AS observed, a.baseline AS baseline, a.spread AS spread, a.message AS message, a.detail AS detail, a.detections AS detections,
                  toString(toUnixTimestamp64Milli(a.first_detected_at)) AS fda, toString(toUnixTimestamp64Milli(a.last_detected_at)) AS lda,
                  x.ack_by AS acknowledged_by, if(x.acked > 0, toString(toUnixTimestamp64Milli(x.ack_at)), NULL) AS aa,
                  x.res_by AS resolved_by, if(x.resolved > 0, toString(toUnixTimestamp64Milli(x.res_at)), NULL) AS ra, x.note AS resolution_note
                FROM ${this.db}.anomalies AS a FINAL
                LEFT JOIN (
                  SELECT anomaly_id, countIf(action = 'acknowledge') AS acked, countIf(action = 'resolve') AS resolved,
                    argMaxIf(actor, at, action = 'acknowledge') AS ack_by, maxIf(at, action = 'acknowledge') AS ack_at,
                    argMaxIf(actor, at, action = 'resolve') AS res_by, maxIf(at, action = 'resolve') AS res_at, argMaxIf(note, at, action = 'resolve') AS note
                  FROM ${this.db}.anomaly_actions GROUP BY anomaly_id
                ) AS x ON x.anomaly_id = a.id
              ) WHERE ${where.join(' AND ')} ORDER BY lda DESC, id LIMIT {limit:UInt32}`,
      query_params: params,
      format: 'JSONEachRow',
      clickhouse_settings: { output_format_json_quote_64bit_integers: 0, join_use_nulls: 0 },
    });
    return (await rs.json<Row>()).map((r) => ({
      id: r.id,
      customer: r.customer,
      meter: r.meter,
      kind: r.kind as AnomalyKind,
      status: r.status as AnomalyStatus,
      severity: r.severity as Severity,
      score: Number(r.score),
      windowStart: iso(Number(r.ws)),
      windowEnd: iso(Number(r.we)),
      observed: Number(r.observed),
      baseline: Number(r.baseline),
      spread: Number(r.spread),
      message: r.message,
      detail: JSON.parse(r.detail || '{}') as Record<string, unknown>,
      detections: Number(r.detections),
      firstDetectedAt: iso(Number(r.fda)),
      lastDetectedAt: iso(Number(r.lda)),
      acknowledgedBy: r.acknowledged_by ?? '',
      acknowledgedAt: r.aa ? iso(Number(r.aa)) : null,
      resolvedBy: r.resolved_by ?? '',
      resolvedAt: r.ra ? iso(Number(r.ra)) : null,
      resolutionNote: r.resolution_note ?? '',
    }));
  }

  async get(id: string): Promise<Anomaly> {
    const [a] = await this.list({ id });
    if (!a) throw new AppError('NOT_FOUND', `no anomaly "${id}"`);
    return a;
  }

  async write(a: Anomaly): Promise<void> {
    await this.store.ch.insert({
      table: `${this.db}.anomalies`,
      values: [
        {
          id: a.id,
          customer: a.customer,
          meter: a.meter,
          kind: a.kind,
          severity: a.severity,
          score: Number.isFinite(a.score) ? a.score : 0,
          window_start: Date.parse(a.windowStart),
          window_end: Date.parse(a.windowEnd),
          observed: a.observed,
          baseline: a.baseline,
          spread: a.spread,
          message: a.message,
          detail: JSON.stringify(a.detail),
          detections: a.detections,
          first_detected_at: Date.parse(a.firstDetectedAt),
          last_detected_at: Date.parse(a.lastDetectedAt),
          version: this.version(),
        },
      ],
      format: 'JSONEachRow',
    });
  }

  /**
   * Records a detection: updates the open (or acknowledged) anomaly of this customer × meter ×
   * kind, or opens a new one, unless it is the episode someone already resolved. Returns the
   * anomaly and whether it is new (only new ones alert).
   */
  async upsert(customer: string, meter: string, d: Detection, nowMs: number, detail: Record<string, unknown> = {}): Promise<{ anomaly: Anomaly; created: boolean }> {
    const r = recordDetection(await this.list({ customer, meter, kind: d.kind }), customer, meter, d, nowMs, detail);
    if (r.changed) await this.write(r.anomaly);
    return { anomaly: r.anomaly, created: r.created };
  }

  private async act(id: string, action: 'acknowledge' | 'resolve', actor: string, note: string): Promise<Anomaly> {
    const a = await this.get(id);
    if (a.status === 'resolved') throw new AppError('REQUEST_INVALID', `anomaly ${id} is already resolved`);
    await this.store.ch.insert({ table: `${this.db}.anomaly_actions`, values: [{ anomaly_id: id, action, actor, note, at: Date.now() }], format: 'JSONEachRow' });
    return this.get(id);
  }

  acknowledge(id: string, by: string): Promise<Anomaly> {
    return this.act(id, 'acknowledge', by, '');
  }

  resolve(id: string, by: string, note: string): Promise<Anomaly> {
    return this.act(id, 'resolve', by, note);
  }
}

/**
 * The episode rule of `upsert`, over the anomalies of one customer × meter × kind: a detection
 * updates the open (or acknowledged) one, keeping its start; is dropped when it is the episode
 * someone already resolved (same window start); else opens a new one. `changed`: there is a row
 * to write. The id is derived from the key and the time, so a retried scan writes the same row.
 */
export function recordDetection(
  existing: readonly Anomaly[],
  customer: string,
  meter: string,
  d: Detection,
  nowMs: number,
  detail: Record<string, unknown> = {},
): { anomaly: Anomaly; created: boolean; changed: boolean } {
  const [current] = existing.filter((a) => a.status !== 'resolved');
  const resolvedEpisode = !current && existing.find((a) => a.status === 'resolved' && a.windowStart === iso(d.windowStartMs));
  if (resolvedEpisode) return { anomaly: resolvedEpisode, created: false, changed: false };
  const fields = {
    severity: d.severity,
    score: d.score,
    windowStart: iso(d.windowStartMs),
    windowEnd: iso(d.windowEndMs),
    observed: d.observed,
    baseline: d.baseline,
    spread: d.spread,
    message: d.message,
    lastDetectedAt: iso(nowMs),
  };
  if (current) {
    return { anomaly: { ...current, ...fields, windowStart: current.windowStart, detail: { ...current.detail, ...detail }, detections: current.detections + 1 }, created: false, changed: true };
  }
  const id = `anom_${createHash('sha256').update(`${customer}\u0000${meter}\u0000${d.kind}\u0000${nowMs}`).digest('hex').slice(0, 20)}`;
  const anomaly: Anomaly = {
    id,
    customer,
    meter,
    kind: d.kind,
    status: 'open',
    ...fields,
    detail,
    detections: 1,
    firstDetectedAt: iso(nowMs),
    acknowledgedBy: '',
    acknowledgedAt: null,
    resolvedBy: '',
    resolvedAt: null,
    resolutionNote: '',
  };
  return { anomaly, created: true, changed: true };
}
