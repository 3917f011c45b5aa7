import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** Every Prometheus metric, named `meterline_<component>_<what>_<unit>`, on one registry. */
export function createMetrics(opts: { defaults?: boolean } = {}) {
  const registry = new Registry();
  if (opts.defaults ?? true) collectDefaultMetrics({ register: registry, prefix: 'meterline_' });
  const reg = [registry];
  return {
    registry,
    ingestEventsAccepted: new Counter({ name: 'meterline_ingest_events_accepted_total', help: 'Events stored in JetStream by ingest', registers: reg }),
    ingestEventsRejected: new Counter({ name: 'meterline_ingest_events_rejected_total', help: 'Events rejected by ingest, by reason', labelNames: ['reason'], registers: reg }),
    ingestRequests: new Counter({ name: 'meterline_ingest_requests_total', help: 'Ingest HTTP requests by status', labelNames: ['status'], registers: reg }),
    ingestPublishSeconds: new Histogram({
      name: 'meterline_ingest_publish_latency_seconds',
      help: 'JetStream publish latency per batch',
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: reg,
    }),
    ingestInflight: new Gauge({ name: 'meterline_ingest_inflight_batches', help: 'Batches being published right now', registers: reg }),
    processorConsumerPending: new Gauge({ name: 'meterline_processor_consumer_pending_messages', help: 'Messages in the stream not yet delivered to the processor', registers: reg }),
    processorEvents: new Counter({ name: 'meterline_processor_events_total', help: 'Events seen by the processor, by outcome', labelNames: ['outcome'], registers: reg }),
    processorDuplicates: new Counter({ name: 'meterline_processor_duplicates_dropped_total', help: 'Events dropped as duplicates of an accepted (source, id)', registers: reg }),
    processorLateEvents: new Counter({ name: 'meterline_processor_late_events_total', help: 'Events whose event time was older than PROCESSOR_LATE_AFTER at processing', registers: reg }),
    processorDeadLettered: new Counter({ name: 'meterline_processor_dead_lettered_total', help: 'Events parked in the dead-letter stream', labelNames: ['reason'], registers: reg }),
    processorInsertRows: new Counter({ name: 'meterline_processor_insert_rows_total', help: 'Rows inserted into events_raw', registers: reg }),
    processorInsertSeconds: new Histogram({
      name: 'meterline_processor_insert_latency_seconds',
      help: 'ClickHouse insert latency per batch',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: reg,
    }),
    processorDedupKeys: new Gauge({ name: 'meterline_processor_dedup_keys', help: 'Keys held in the in-memory dedup index', registers: reg }),
    processorStuckPartitions: new Gauge({ name: 'meterline_processor_stuck_partitions', help: 'Partitions whose writes have kept failing for a minute or more (the store away or refusing)', registers: reg }),
    processorLedgerReplays: new Counter({ name: 'meterline_processor_ledger_replays_total', help: 'Inserts cut off by a crash or a lost lease, repeated from the write ledger by the next owner', registers: reg }),
    processorStoreLookups: new Counter({ name: 'meterline_processor_dedup_store_lookups_total', help: 'Keys checked against ClickHouse because memory did not cover the window', registers: reg }),
    alertDeliveryAttempts: new Counter({
      name: 'meterline_alerts_delivery_attempts_total',
      help: 'Webhook delivery attempts by the state they left the delivery in (delivered, retrying, failed)',
      labelNames: ['outcome'],
      registers: reg,
    }),
    apiRequestSeconds: new Histogram({
      name: 'meterline_api_request_duration_seconds',
      help: 'API request duration by route',
      labelNames: ['route', 'method', 'status'],
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: reg,
    }),
  };
}

export type Metrics = ReturnType<typeof createMetrics>;
