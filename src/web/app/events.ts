/// <reference lib="dom" />
import type { ServerMessage } from './types.js';

/** The close code the gateway uses when the token behind a stream stops being valid. */
const REVOKED = 4001;

export type EventListener = (m: ServerMessage) => void;

/**
 * The live notification stream. Reconnects with backoff; every (re)connection delivers a
 * `hello`, which screens take as "you may have missed something, reload".
 */
export class LiveEvents {
  private ws: WebSocket | undefined;
  private readonly listeners = new Set<EventListener>();
  private retries = 0;
  private timer: number | undefined;
  private stopped = true;
  private token = '';
  onStatus: (live: boolean) => void = () => undefined;
  /** The gateway closed the stream because the sign-in is no longer valid (close code 4001). */
  onRevoked: (reason: string) => void = () => undefined;

  start(token: string): void {
    this.stop();
    this.token = token;
    this.stopped = false;
    this.connect();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== undefined) window.clearTimeout(this.timer);
    this.timer = undefined;
    this.ws?.close();
    this.ws = undefined;
  }

  subscribe(fn: EventListener): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  private connect(): void {
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const ws = new WebSocket(`${scheme}//${location.host}/api/v1/events?token=${encodeURIComponent(this.token)}`);
    this.ws = ws;
    ws.addEventListener('message', (ev) => {
      let msg: ServerMessage;
      try {
        msg = JSON.parse(String(ev.data)) as ServerMessage;
      } catch {
        return;
      }
      if (msg.type === 'hello') {
        this.retries = 0;
        this.onStatus(true);
      }
      for (const fn of [...this.listeners]) {
        try {
          fn(msg);
        } catch (err) {
          console.error('event listener failed', err);
        }
      }
    });
    ws.addEventListener('close', (ev) => {
      if (this.ws !== ws) return;
      this.onStatus(false);
      if (this.stopped) return;
      // Signed out, token revoked, password changed, account disabled: retrying cannot help.
      if (ev.code === REVOKED) {
        this.stop();
        this.onRevoked(ev.reason);
        return;
      }
      const wait = Math.min(30_000, 500 * 2 ** this.retries);
      this.retries += 1;
      this.timer = window.setTimeout(() => this.connect(), wait);
    });
  }
}
