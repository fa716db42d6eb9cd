import { randomBytes } from 'node:crypto';
import type { UpstreamTarget } from './upstream.js';

export interface CancelTarget {
  target: UpstreamTarget;
  /** The target's own BackendKeyData for the session. */
  key: Buffer;
}

/**
 * Cancel keys the gateway handed out (a random 64-bit pid + secret per session) and the
 * target key each stands for. In-process: a CancelRequest must reach the node that holds
 * the session, as it must reach the right backend with PostgreSQL itself. Within one node,
 * data-path workers (src/dataplane) each issue keys whose first byte is their number, so a
 * CancelRequest handed to another worker is passed on to the one that holds the session.
 */
export class CancelKeys {
  private readonly map = new Map<string, CancelTarget>();
  private worker: { index: number; count: number } | undefined;

  /** Marks the keys this instance issues as worker `index`'s of `count`. */
  ownedBy(index: number, count: number): void {
    if (count > 1) this.worker = { index, count };
  }

  /** The worker that issued `key`, when it is another one than this (undefined: ours, or nobody's). */
  elsewhere(key: Buffer): number | undefined {
    const w = this.worker;
    if (!w || key.length !== 8) return undefined;
    return key[0]! !== w.index && key[0]! < w.count ? key[0] : undefined;
  }

  issue(t: CancelTarget): Buffer {
    for (;;) {
      const key = randomBytes(8);
      // 56 random bits remain with a worker's number in front (PostgreSQL's own secret has 32).
      if (this.worker) key[0] = this.worker.index;
      const id = key.toString('hex');
      if (this.map.has(id)) continue;
      this.map.set(id, t);
      return key;
    }
  }

  lookup(key: Buffer): CancelTarget | undefined {
    return key.length === 8 ? this.map.get(key.toString('hex')) : undefined;
  }

  release(key: Buffer): void {
    this.map.delete(key.toString('hex'));
  }

  get size(): number {
    return this.map.size;
  }
}
