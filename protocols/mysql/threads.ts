/**
 * Connection ids and the target threads behind them, for one adapter (one gateway node).
 *
 * A client learns two ids for its connection: the gateway's, from the handshake (mysql2's
 * `threadId`, what the mariadb CLI's Ctrl-C sends in `KILL QUERY`), and its target thread's,
 * from `CONNECTION_ID()` or the process list. `KILL n` through the gateway accepts either,
 * but only for the caller's own live sessions on the same resource and target: a Gatehouse
 * user can never end another user's statement, nor a direct client's, through the gateway.
 */
import { randomInt } from 'node:crypto';

export interface LiveThread {
  /** The connection id the gateway's handshake gave the client. */
  gatewayId: number;
  /** The Gatehouse user. */
  user: string;
  resource: string;
  /** host:port of the target the session is logged in to. */
  target: string;
  /** The target's own thread id for the session (its CONNECTION_ID()). */
  threadId: number;
}

export type Resolved = { ok: true; thread: LiveThread } | { ok: false; why: 'not_yours' | 'ambiguous' };

const MAX_ID = 0xffffffff;

/** A change to the live threads, as the other data-path workers of a listener learn it. */
export type ThreadChange = { add: LiveThread } | { remove: number } | { peerGone: number };

export class ThreadRegistry {
  private next: number;
  /** Every id handed out and not yet released, live or still in its handshake. */
  private readonly inUse = new Set<number>();
  private readonly live = new Map<number, LiveThread>();
  /** In a data-path worker: its number and how many there are (ids are ≡ index mod count). */
  private worker: { index: number; count: number; tell: (c: ThreadChange) => void } | undefined;
  /** Threads of other workers, by the worker that holds them. */
  private readonly owner = new Map<number, number>();

  constructor(start: number = randomInt(1, MAX_ID)) {
    // Not 1 on every start: an id must not look like a target thread id by accident.
    this.next = start;
  }

  /**
   * Shares the registry with the other data-path workers of the listener: this one hands out
   * only ids ≡ `index` (mod `count`), so no two workers give a client the same id, and tells
   * the others (`tell`) of every session it registers or ends, so that a KILL finds the caller's
   * sessions in any worker. What the others tell comes in through `apply`.
   */
  share(index: number, count: number, tell: (c: ThreadChange) => void): void {
    if (count < 2) return;
    this.worker = { index, count, tell };
    this.next = this.next - (this.next % count) + index;
    if (this.next < 1 || this.next > MAX_ID) this.next = count + index;
  }

  /** A change another worker told of. */
  apply(c: ThreadChange, from: number): void {
    if ('add' in c) {
      this.live.set(c.add.gatewayId, c.add);
      this.owner.set(c.add.gatewayId, from);
    } else if ('remove' in c) {
      if (this.owner.get(c.remove) === from) this.forget(c.remove);
    } else {
      // That worker stopped: its sessions went with it.
      for (const [id, w] of this.owner) if (w === c.peerGone) this.forget(id);
    }
  }

  /** The live sessions this worker holds itself (what a newly started worker is told). */
  own(): LiveThread[] {
    return [...this.live.values()].filter((t) => !this.owner.has(t.gatewayId));
  }

  private forget(id: number): void {
    this.live.delete(id);
    this.owner.delete(id);
  }

  /** A connection id for a new client connection (never 0, never one in use). */
  allocate(): number {
    const step = this.worker?.count ?? 1;
    for (;;) {
      const id = this.next;
      this.next = id > MAX_ID - step ? (this.worker?.index || step) : id + step;
      if (!this.inUse.has(id)) {
        this.inUse.add(id);
        return id;
      }
    }
  }

  /** The connection is gone: its id may be handed out again. */
  release(gatewayId: number): void {
    if (this.live.delete(gatewayId)) this.worker?.tell({ remove: gatewayId });
    this.inUse.delete(gatewayId);
  }

  register(t: LiveThread): void {
    this.live.set(t.gatewayId, t);
    this.worker?.tell({ add: t });
  }

  unregister(gatewayId: number): void {
    if (this.live.delete(gatewayId)) this.worker?.tell({ remove: gatewayId });
  }

  /**
   * The target thread `id` names for `caller`: one of the caller's own live sessions on the
   * same resource and target, by its gateway id or its target thread id. An id that is both
   * (one session's gateway id, another's thread id) is refused rather than guessed.
   */
  resolve(caller: Pick<LiveThread, 'user' | 'resource' | 'target'>, id: number): Resolved {
    let byGateway: LiveThread | undefined;
    let byThread: LiveThread | undefined;
    for (const t of this.live.values()) {
      if (t.user !== caller.user || t.resource !== caller.resource || t.target !== caller.target) continue;
      if (t.gatewayId === id) byGateway = t;
      if (t.threadId === id) byThread = t;
    }
    if (byGateway && byThread && byGateway !== byThread) return { ok: false, why: 'ambiguous' };
    const thread = byGateway ?? byThread;
    return thread ? { ok: true, thread } : { ok: false, why: 'not_yours' };
  }
}
