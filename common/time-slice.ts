/**
 * Lets the event loop run every few milliseconds of a long piece of work: in `meterline start`
 * the processor shares its thread with ingest and the API, whose requests would otherwise wait
 * for a whole batch (tens of milliseconds). `due()` is cheap: it reads the clock every
 * `checkEvery`th call (per item of a loop: 32; per chunk of items: 1).
 */
export class TimeSlice {
  private calls = 0;
  private since = performance.now();

  constructor(
    private readonly sliceMs = 4,
    private readonly checkEvery = 32,
  ) {}

  due(): boolean {
    return ++this.calls % this.checkEvery === 0 && performance.now() - this.since >= this.sliceMs;
  }

  async pause(): Promise<void> {
    await new Promise<void>((r) => setImmediate(r));
    this.since = performance.now();
  }
}

