/**
 * Runs the expiry jobs (pending requests, grants, leases, escalations) at the earliest due
 * time any of them reports, so nothing waits for a polling interval. `poke()` after any
 * change re-plans. One run at a time; a poke during a run triggers one more.
 */
export class Sweeper {
    clock;
    jobs;
    log;
    cancel;
    running;
    again = false;
    stopped = false;
    constructor(clock, jobs, log) {
        this.clock = clock;
        this.jobs = jobs;
        this.log = log;
    }
    poke() {
        if (this.stopped)
            return;
        this.arm(this.clock.now());
    }
    /** Runs every job now and re-arms; resolves when done. */
    async run() {
        if (this.running) {
            this.again = true;
            return this.running;
        }
        this.running = (async () => {
            do {
                this.again = false;
                let earliest;
                for (const job of this.jobs) {
                    try {
                        const due = await job();
                        if (due && (!earliest || due < earliest))
                            earliest = due;
                    }
                    catch (err) {
                        this.log.error({ err }, 'expiry job failed');
                    }
                }
                if (earliest)
                    this.arm(earliest);
            } while (this.again);
        })().finally(() => {
            this.running = undefined;
        });
        return this.running;
    }
    stop() {
        this.stopped = true;
        this.cancel?.();
    }
    arm(at) {
        if (this.stopped)
            return;
        this.cancel?.();
        this.cancel = this.clock.setTimer(at, () => void this.run());
    }
}
//# sourceMappingURL=sweeper.js.map