import { errorMessage } from '../common/errors.ts';
import type { Leases } from '../common/lease.ts';
import type { Logger } from '../common/logger.ts';
import type { Meter } from '../meter/index.ts';

/** The backfill of new meters as the processor runs it (`Backfiller`). */
export interface Backfills {
  /** The meters whose backfill has not completed. */
  pending(meters: Meter[]): Promise<Meter[]>;
  run(meter: Meter, opts: { record?: boolean }): Promise<unknown>;
}

/**
 * When backfills run: each under a lease (one processor at a time), on the processor's serial
 * chain (between batches); a meter created just now gets a second pass after the settle time.
 */
export class BackfillSchedule {
  private backfiller: Backfills | undefined;
  private readonly timers = new Set<NodeJS.Timeout>();

  constructor(
    private readonly leases: Pick<Leases, 'withLease'>,
    private readonly log: Logger,
    private readonly settleMs: number,
    private readonly serial: (task: () => Promise<void>) => Promise<void>,
    private readonly stopping: () => boolean,
  ) {}

  use(backfiller: Backfills): void {
    this.backfiller = backfiller;
  }

  stop(): void {
    for (const t of this.timers) clearTimeout(t);
  }

  async backfillPending(meters: Meter[]): Promise<void> {
    const pending = await this.backfiller!.pending(meters);
    for (const m of pending) this.backfill(m, false);
  }

  /**
   * Backfills `meter` under a lease (one processor at a time), on this processor's serial chain;
   * a meter created just now gets a second pass after the settle time.
   */
  backfill(meter: Meter, fresh: boolean): void {
    const pass = (final: boolean): Promise<void> =>
      this.serial(async () => {
        const r = await this.leases.withLease(`backfill.${meter.id}`, () => this.backfiller!.run(meter, { record: final }), this.log);
        if (!r.ran && final) this.later(() => pass(true), 5_000); // someone else is on it: look again later
      }).catch((err: unknown) => {
        // The store or NATS is away: the final pass runs again later (it skips what is counted).
        this.log.error({ err: errorMessage(err), meter: meter.slug }, 'backfill failed; retrying in 30 s');
        this.later(() => pass(true), 30_000);
      });
    if (!fresh) {
      void pass(true);
      return;
    }
    void pass(false).then(() => this.later(() => pass(true), this.settleMs));
  }

  private later(fn: () => unknown, ms: number): void {
    if (this.stopping()) return;
    const t = setTimeout(() => {
      this.timers.delete(t);
      if (!this.stopping()) void fn();
    }, ms);
    t.unref();
    this.timers.add(t);
  }
}
