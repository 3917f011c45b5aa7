import type { Store } from '../common/clickhouse.ts';
import type { TimeSlice } from '../common/time-slice.ts';
import type { MeterValue } from '../meter/index.ts';

/** A row of `events_raw`, as the processor writes it. Times are epoch milliseconds. */
export interface RawRow {
  source: string;
  id: string;
  type: string;
  subject: string;
  time: number;
  ingested_at: number;
  received_at: number;
  data: string;
  stream_seq: number;
  meter_values: MeterValue[];
}

const COLUMNS = 'source, id, type, subject, time, ingested_at, received_at, data, stream_seq, meter_values';

/**
 * Inserts rows into `events_raw` (its materialized views fan them out to `event_keys`,
 * `meter_values` and the rollups) with a deduplication token: the same rows with the same token
 * again are a no-op, in the table and in every view. Rows travel as JSONCompactEachRow (arrays,
 * tuples as arrays): ClickHouse parses it with about a fifth less CPU than JSONEachRow, and it
 * is smaller. The rows are encoded here, a slice at a time (`slice`: the event loop gets a turn
 * every few milliseconds), and sent with the statement as one request (ClickHouse reads an
 * INSERT's data after `FORMAT`, over HTTP and embedded alike). The processor and the bench's
 * insert ceiling both insert through here.
 */
export async function insertRawRows(store: Store, rows: RawRow[], token: string, slice?: TimeSlice): Promise<void> {
  const lines = new Array<string>(rows.length);
  for (let i = 0; i < rows.length; i++) {
    if (slice?.due()) await slice.pause();
    const r = rows[i]!;
    lines[i] = JSON.stringify([r.source, r.id, r.type, r.subject, r.time, r.ingested_at, r.received_at, r.data, r.stream_seq, r.meter_values.map((m) => [m.meter_id, m.value, m.value_key, m.group_by])]);
  }
  await store.ch.command({
    query: `INSERT INTO ${store.db}.events_raw (${COLUMNS}) FORMAT JSONCompactEachRow\n${lines.join('\n')}`,
    clickhouse_settings: {
      insert_deduplication_token: token,
      deduplicate_blocks_in_dependent_materialized_views: 1,
      input_format_json_named_tuples_as_objects: 0,
    },
  });
}
