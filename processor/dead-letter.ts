import { headers as natsHeaders } from '@nats-io/transport-node';
import type { NatsClients } from '../common/nats.ts';
import { AppError } from '../common/errors.ts';
import { RECEIVED_AT_HEADER } from '../ingest/index.ts';

/**
 * The dead-letter stream: events that were accepted but cannot be counted (invalid once
 * decoded, a meter value missing, rejected by the store), each with the reason. Listing reads
 * the stream; a re-drive publishes the event back onto the event stream (it is then counted
 * once, like any other event) and only then removes it from the dead-letter stream.
 */
export interface DeadLetter {
  /** Sequence in the dead-letter stream: the handle for re-drive. */
  seq: number;
  reason: string;
  /** Where it came from: event stream sequence and index within that batch. */
  stream: string;
  streamSeq: number;
  index: number;
  receivedAtMs: number;
  deadLetteredAt: string;
  /** The event exactly as received (JSON text). */
  event: string;
}

export type DeadLetterEntry = Omit<DeadLetter, 'seq'>;

export class DeadLetters {
  constructor(private readonly nats: NatsClients) {}

  async park(entry: DeadLetterEntry): Promise<void> {
    await this.nats.js.publish(this.nats.dlqSubject, JSON.stringify(entry), {
      // The same event parked again after a redelivery is stored once.
      msgID: `dlq:${entry.stream}:${entry.streamSeq}:${entry.index}`,
    });
  }

  async list(opts: { afterSeq?: number; limit?: number } = {}): Promise<{ items: DeadLetter[]; total: number; nextAfterSeq?: number }> {
    const limit = Math.min(opts.limit ?? 100, 1000);
    const info = await this.nats.jsm.streams.info(this.nats.topology.dlqStream);
    const items: DeadLetter[] = [];
    let seq = Math.max(info.state.first_seq, (opts.afterSeq ?? 0) + 1);
    while (items.length < limit && seq <= info.state.last_seq) {
      const m = await this.get(seq);
      if (m) items.push(m);
      seq++;
    }
    return { items, total: info.state.messages, ...(seq <= info.state.last_seq ? { nextAfterSeq: seq - 1 } : {}) };
  }

  async get(seq: number): Promise<DeadLetter | undefined> {
    try {
      const m = await this.nats.jsm.streams.getMessage(this.nats.topology.dlqStream, { seq });
      if (!m) return undefined;
      return { seq: m.seq, ...(JSON.parse(new TextDecoder().decode(m.data)) as DeadLetterEntry) };
    } catch (err) {
      if (/no message found|not found/i.test(String(err))) return undefined;
      throw err;
    }
  }

  /** Re-publishes the event for processing, then removes the dead letter. Returns the new stream sequence. */
  async redrive(seq: number): Promise<{ streamSeq: number }> {
    const dl = await this.get(seq);
    if (!dl) throw new AppError('DEADLETTER_NOT_FOUND', `no dead letter with seq ${seq}; list them with GET /api/v1/dead-letters`);
    const h = natsHeaders();
    h.set(RECEIVED_AT_HEADER, String(dl.receivedAtMs));
    const ack = await this.nats.js.publish(this.nats.eventSubject('redrive'), dl.event, { msgID: `redrive:${this.nats.topology.dlqStream}:${seq}`, headers: h });
    await this.nats.jsm.streams.deleteMessage(this.nats.topology.dlqStream, seq, false);
    return { streamSeq: ack.seq };
  }
}
