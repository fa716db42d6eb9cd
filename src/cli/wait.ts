import WebSocket from 'ws';
import type { EventMessage, RequestView } from '../api/wire.js';
import { CliError } from './cli-error.js';
import type { ApiClient } from './client.js';

/** States after which waiting is over: access granted, or it never will be. */
const DONE_STATES = new Set(['approved', 'active', 'denied', 'cancelled', 'expired', 'ended']);

export function isSettled(request: Pick<RequestView, 'state'>): boolean {
  return DONE_STATES.has(request.state);
}

export interface WaitOptions {
  client: ApiClient;
  requestId: string;
  /** Called once per visible change (state, stage or number of reviews), the first read included. */
  onUpdate(request: RequestView, event: string): void;
  /** Pauses before each reconnect after the stream drops; its length is the retry budget. */
  reconnectDelaysMs?: number[];
  /** How long to wait for the server's hello before reading the request anyway. */
  helloGraceMs?: number;
}

const DEFAULT_RECONNECT_MS = [500, 1000, 2000, 4000, 8000];
const HELLO_GRACE_MS = 1000;

/**
 * Follows one request on /api/v1/events until it settles, and resolves with its final
 * form. Each time the stream (re)connects the request is also read once over HTTP, so a
 * decision made between creating the request and subscribing is never missed.
 */
export function waitForDecision(opts: WaitOptions): Promise<RequestView> {
  const { client, requestId } = opts;
  const delays = opts.reconnectDelaysMs ?? DEFAULT_RECONNECT_MS;
  const url = client.wsUrl('/events');
  return new Promise<RequestView>((resolve, reject) => {
    let lastKey = '';
    let lastVersion = -Infinity;
    let attempt = 0;
    let finished = false;
    let socket: WebSocket | undefined;
    let retryTimer: NodeJS.Timeout | undefined;
    let helloTimer: NodeJS.Timeout | undefined;

    const finish = (err: Error | undefined, request?: RequestView): void => {
      if (finished) return;
      finished = true;
      clearTimeout(retryTimer);
      clearTimeout(helloTimer);
      socket?.removeAllListeners();
      socket?.on('error', () => {});
      socket?.terminate();
      if (err) reject(err);
      else resolve(request!);
    };

    const seen = (request: RequestView, event: string): void => {
      if (finished || request.id !== requestId) return;
      // A poll answered late must not undo a newer pushed state; every update bumps version.
      if (request.version < lastVersion) return;
      lastVersion = request.version;
      const key = `${request.state}/${request.stage}/${request.reviews.length}`;
      if (key !== lastKey) {
        lastKey = key;
        opts.onUpdate(request, event);
      }
      if (isSettled(request)) finish(undefined, request);
    };

    const poll = (): void => {
      client.get<RequestView>(`/requests/${encodeURIComponent(requestId)}`).then(
        (r) => seen(r, 'poll'),
        (e: unknown) => finish(e as Error),
      );
    };

    const dropped = (reason: string): void => {
      if (finished) return;
      const delay = delays[attempt++];
      if (delay === undefined) {
        finish(new CliError('NETWORK', `lost the notification stream at ${url} (${reason}); check later with gatehouse requests --mine`));
        return;
      }
      retryTimer = setTimeout(connect, delay);
    };

    const connect = (): void => {
      const headers: Record<string, string> = {};
      if (client.token) headers.authorization = `Bearer ${client.token}`;
      const ws = new WebSocket(url, { headers, ...(client.caPem !== undefined ? { ca: client.caPem } : {}) });
      socket = ws;
      let why = 'connection closed';
      ws.on('unexpected-response', (_req, res) => {
        const status = res.statusCode ?? 0;
        res.resume();
        if (status === 401) finish(new CliError('UNAUTHENTICATED', 'not signed in, or the session expired; run gatehouse login --user NAME', { status }));
        else if (status === 403) finish(new CliError('FORBIDDEN', `the gateway refused the notification stream (HTTP ${status})`, { status }));
        else {
          why = `HTTP ${status}`;
          ws.terminate();
        }
      });
      // The server's hello says the socket is subscribed; reading the request only then closes
      // the race with a decision made just before. A server that never says hello still gets read.
      ws.on('open', () => {
        attempt = 0;
        helloTimer = setTimeout(poll, opts.helloGraceMs ?? HELLO_GRACE_MS);
      });
      ws.on('message', (data) => {
        let msg: EventMessage;
        try {
          msg = JSON.parse(data.toString()) as EventMessage;
        } catch {
          return;
        }
        if (msg.type === 'hello') {
          clearTimeout(helloTimer);
          poll();
        } else if (msg.type.startsWith('request_') && isRequestMessage(msg)) seen(msg.request, msg.type);
      });
      ws.on('error', (e) => {
        why = (e as NodeJS.ErrnoException).code ?? e.message;
      });
      ws.on('close', () => {
        clearTimeout(helloTimer);
        dropped(why);
      });
    };

    connect();
  });
}

function isRequestMessage(msg: EventMessage): msg is { type: string; request: RequestView } {
  const r = (msg as { request?: unknown }).request;
  return typeof r === 'object' && r !== null && typeof (r as { id?: unknown }).id === 'string';
}
