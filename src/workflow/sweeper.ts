import type { Cancel, Clock } from '../core/clock.js';
import type { Logger } from '../core/log.js';

/**
 * Runs the expiry jobs (pending requests, grants, leases, escalations) at the earliest due
 * time any of them reports, so nothing waits for a polling interval. `poke()` after any
 * change re-plans. One run at a time; a poke during a run triggers one more.
 */
export class Sweeper {
  private cancel: Cancel | undefined;
  private running: Promise<void> | undefined;
  private again = false;
  private stopped = false;

  constructor(
    private readonly clock: Clock,
    private readonly jobs: Array<() => Promise<Date | undefined>>,
    private readonly log: Logger,
  ) {}

  poke(): void {
    if (this.stopped) return;
    this.arm(this.clock.now());
  }

  /** Runs every job now and re-arms; resolves when done. */
  async run(): Promise<void> {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = (async () => {
      do {
        this.again = false;
        let earliest: Date | undefined;
        for (const job of this.jobs) {
          try {
            const due = await job();
            if (due && (!earliest || due < earliest)) earliest = due;
          } catch (err) {
            this.log.error({ err }, 'expiry job failed');
          }
        }
        if (earliest) this.arm(earliest);
      } while (this.again);
    })().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  stop(): void {
    this.stopped = true;
    this.cancel?.();
  }

  private arm(at: Date): void {
    if (this.stopped) return;
    this.cancel?.();
    this.cancel = this.clock.setTimer(at, () => void this.run());
  }
}
