import type { Logger } from '../core/log.js';
import type { SessionRecord } from '../core/model.js';
import type { Store } from '../store/store.js';
import type { AuditSink } from '../workflow/context.js';

/** What is written about one session that ended: its record and its session.end audit row. */
export interface EndedSession {
  record: SessionRecord;
  audit: { actor: string; subject: string; data: Record<string, unknown> };
  /** Runs once both are written (or failed): the session_ended notice. */
  after(): void;
}

export interface EndRecorderOptions {
  store: Store;
  audit: AuditSink;
  log: Logger;
  /** A batch larger than this waits one turn of the event loop before it is written (default 16). */
  deferAbove?: number;
  /** A deferred batch is written this many sessions per transaction, a turn of the loop between (default 100). */
  chunk?: number;
  /**
   * While a session's close is still under way (a door whose sockets are closed on another
   * thread or in a data-path worker answers a close later): a promise that resolves once none
   * is. A batch waits for it, at most `holdMs`, gathering the ends that arrive meanwhile.
   */
  closing?: () => Promise<void> | undefined;
  /** The longest a batch waits for `closing` (default 1,000 ms). */
  holdMs?: number;
}

/** Two turns of the check phase: whatever I/O the current turn queued (socket shutdowns) runs in between. */
const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(() => setImmediate(resolve)));

/** `closing`, or `ms` milliseconds, whichever comes first. */
function atMost(closing: Promise<void>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, ms);
    timer.unref();
  });
  return Promise.race([closing, late]).finally(() => clearTimeout(timer));
}

/**
 * Records the ends of sessions in batches. The broker closes a session's socket first and then
 * hands its end here; every end handed over in one synchronous run becomes one batch, written
 * with one store transaction for the records and one for the audit rows. A revoke event that
 * ends many sessions (a force check-in of a lease they share) ends them all inside one emit, so
 * a thousand sessions cost two transactions instead of two thousand, and nothing is written
 * until every socket has been told goodbye.
 *
 * A large batch (above `deferAbove`) waits one more turn of the event loop: the shutdowns of its
 * sockets are queued I/O, and they reach the kernel before the transactions hold the loop; it is
 * then written `chunk` sessions per transaction pair, a turn of the loop between chunks. A small
 * one is written at once, so a single session's record is there as soon as it ever was.
 *
 * Where closes are answered later (the native data path shuts its sockets on its own thread; a
 * data-path worker answers over a port), the ends of one revoke arrive over a few hundred
 * milliseconds rather than in one run. A batch then waits until no close is under way (the
 * broker's `closing`), and every end that arrives meanwhile joins it: the records and audit rows
 * of a mass teardown are written once its sockets are closed, not while the sockets' thread, the
 * clients and the database's exiting backends need the same cores.
 */
export class EndRecorder {
  private pending: { items: EndedSession[]; done: Promise<void> } | undefined;
  private readonly deferAbove: number;
  private readonly chunk: number;
  private readonly holdMs: number;

  constructor(private readonly o: EndRecorderOptions) {
    this.deferAbove = o.deferAbove ?? 16;
    this.chunk = o.chunk ?? 100;
    this.holdMs = o.holdMs ?? 1_000;
  }

  /** Resolves once this session's batch is written (failures are logged, never thrown). */
  add(ended: EndedSession): Promise<void> {
    let batch = this.pending;
    if (!batch) {
      const items: EndedSession[] = [];
      batch = { items, done: Promise.resolve().then(() => this.write(items)) };
      this.pending = batch;
    }
    batch.items.push(ended);
    return batch.done;
  }

  private async write(items: EndedSession[]): Promise<void> {
    // Ends handed over while closes are under way join this batch; from here on, the next one.
    const closing = this.o.closing?.();
    if (closing) await atMost(closing, this.holdMs);
    this.pending = undefined;
    if (items.length <= this.deferAbove) return this.writeChunk(items);
    // Each chunk holds the loop for one transaction of each kind; the turns in between let the
    // sockets' shutdowns and the clients' closes through.
    for (let at = 0; at < items.length; at += this.chunk) {
      await nextTurn();
      await this.writeChunk(items.slice(at, at + this.chunk));
    }
  }

  private async writeChunk(items: EndedSession[]): Promise<void> {
    const { store, audit, log } = this.o;
    const ids = (): string[] => items.map((i) => i.record.id);
    try {
      if (items.length === 1) await store.putSession(items[0]!.record);
      else await store.putSessions(items.map((i) => i.record));
    } catch (err) {
      log.error({ err, sessions: ids() }, items.length === 1 ? 'could not record the end of a session' : `could not record the end of ${items.length} sessions`);
    }
    try {
      const entries = items.map((i) => ({ ...i.audit, action: 'session.end' }));
      if (audit.recordMany && entries.length > 1) await audit.recordMany(entries);
      else for (const e of entries) await audit.record(e.actor, e.action, e.subject, e.data);
    } catch (err) {
      log.error({ err, sessions: ids() }, items.length === 1 ? 'could not audit the end of a session' : `could not audit the end of ${items.length} sessions`);
    }
    for (const i of items) i.after();
  }
}
