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
 * the session, as it must reach the right backend with PostgreSQL itself.
 */
export class CancelKeys {
  private readonly map = new Map<string, CancelTarget>();

  issue(t: CancelTarget): Buffer {
    for (;;) {
      const key = randomBytes(8);
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
