/**
 * What a live session did at the operation level (an LDAP search and its filter, a modify and
 * the attributes it named), kept on the session's audit trail. Operations are written in
 * batches, not row by row: a client running thousands of searches must not turn the audit
 * chain into its bottleneck. Consecutive identical operations fold into one entry with a
 * count. A batch is written when it is full, after `flushMs`, and when the session ends.
 */
import type { SessionFacts } from './port.js';

export interface OperationEntry {
  facts: SessionFacts;
  count: number;
}

export interface OperationLogOptions {
  /** Distinct entries per batch (default 100). */
  maxBatch?: number;
  /** A batch is written at the latest this long after its first entry (default 5 s). */
  flushMs?: number;
}

const sameFacts = (a: SessionFacts, b: SessionFacts): boolean => {
  const ka = Object.keys(a);
  return ka.length === Object.keys(b).length && ka.every((k) => a[k] === b[k]);
};

export class OperationLog {
  private entries: OperationEntry[] = [];
  private timer: NodeJS.Timeout | undefined;
  private readonly maxBatch: number;
  private readonly flushMs: number;

  constructor(
    private readonly write: (entries: OperationEntry[]) => void,
    opts: OperationLogOptions = {},
  ) {
    this.maxBatch = opts.maxBatch ?? 100;
    this.flushMs = opts.flushMs ?? 5_000;
  }

  add(facts: SessionFacts): void {
    const last = this.entries.at(-1);
    if (last && sameFacts(last.facts, facts)) last.count++;
    else this.entries.push({ facts, count: 1 });
    if (this.entries.length >= this.maxBatch) this.flush();
    else if (!this.timer) {
      this.timer = setTimeout(() => this.flush(), this.flushMs);
      this.timer.unref();
    }
  }

  /** Writes what is pending (nothing when empty). */
  flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.entries.length === 0) return;
    const batch = this.entries;
    this.entries = [];
    this.write(batch);
  }
}
