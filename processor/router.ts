import { errorMessage } from '../common/errors.ts';
import type { Logger } from '../common/logger.ts';
import { parsedBatch, partitionMessages, RECEIVED_AT_HEADER } from '../ingest/index.ts';
import type { Msg } from './consumer.ts';
import { UTF8_STRICT } from './pipeline.ts';

/** Where the router publishes (JetStream, onto the partitions' subjects). */
export interface RoutePublisher {
  /** The largest message the server takes now, in bytes. */
  maxPayload(): number;
  /** Publishes onto `partition`'s subject; a second publish with the same `msgID` is stored once. */
  publish(partition: number, data: string | Uint8Array, msgID: string, receivedAt: string): Promise<void>;
}

/**
 * The router: events published on free-form subjects go to their partitions' subjects, one
 * message per partition, with a message id made of the source message's sequence, so a
 * redelivered message is stored once (and the partition's dedup would drop it anyway).
 */
export class Router {
  constructor(
    private readonly publisher: RoutePublisher,
    private readonly stream: string,
    private readonly partitions: number,
    private readonly log: Logger,
  ) {}

  async route(m: Msg): Promise<void> {
    let parts: { partition: number; part: string; data: string | Uint8Array }[];
    try {
      // Only `source` and `id` are read here (strings): JSON.parse suffices, and the events
      // move on as their texts, byte for byte. Bytes that are not UTF-8 are never decoded with
      // replacement characters (two distinct ids would become one).
      const text = UTF8_STRICT.decode(m.data);
      const limit = this.publisher.maxPayload() - 1024;
      parts = partitionMessages(text, parsedBatch(text, JSON.parse(text)), this.partitions, limit);
    } catch {
      parts = [{ partition: 0, part: '', data: m.data }]; // malformed: partition 0's owner dead-letters it, bytes as they came, with the reason
    }
    const received = m.headers?.get(RECEIVED_AT_HEADER);
    const receivedAt = received || String(Math.floor(Number(m.info.timestampNanos) / 1e6));
    try {
      await Promise.all(parts.map(({ partition, part, data }) => this.publisher.publish(partition, data, `route:${this.stream}:${m.seq}@${partition}${part}`, receivedAt)));
      m.ack();
    } catch (err) {
      this.log.warn({ err: errorMessage(err), seq: m.seq }, 'could not route a message onto partitions; it will be redelivered');
      m.nak(2_000);
    }
  }
}
