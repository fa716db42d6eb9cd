import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import type { Cancel, Clock } from '../core/clock.js';
import type { Logger } from '../core/log.js';
import type { EventBus, Notice } from '../events/bus.js';
import type { AuthService } from './auth.js';
import type { CredentialService, RevocationReason } from './credentials.js';
import { requestUrl } from './http.js';

/** Turns a notice into the message a client sees: `{type, ...payload}` without the address list. */
export function noticeMessage(n: Notice): Record<string, unknown> {
  const { kind, to: _to, ...rest } = n;
  return { type: kind, ...rest };
}

/** The close code of a socket whose credential is no longer valid (the reason says which way). */
export const WS_CLOSE_UNAUTHORIZED = 4001;

const REVOCATION_WORDS: Record<RevocationReason, string> = {
  signed_out: 'signed out',
  revoked: 'token revoked',
  password_changed: 'password changed',
};

/** One open socket and the credential it was opened with. */
interface Client {
  ws: WebSocket;
  user: string;
  tokenId: string;
  /** Kept to re-check the token before every push. */
  token: string;
  /** Pushes to this socket, in order: each waits for its token check. */
  queue: Promise<void>;
  cancelExpiry: Cancel;
  closed: boolean;
}

export interface NotificationHubDeps {
  auth: AuthService;
  credentials: CredentialService;
  bus: EventBus;
  clock: Clock;
  log: Logger;
}

/**
 * The WebSocket stream `/api/v1/events`: one socket per signed-in client, every open socket
 * of an addressed user receives each notice. Authentication uses the same bearer tokens as
 * the API (header, or `?token=` for browsers, which cannot set headers on a WebSocket).
 *
 * A socket lives no longer than its token: it is closed (4001 and a reason) the moment the
 * token is revoked here, the user is disabled (on any node: the revoke feed), or the token
 * expires; and every push first re-checks the token, so a revocation this node never heard
 * of still stops the notices.
 */
export class NotificationHub {
  private readonly wss = new WebSocketServer({ noServer: true, maxPayload: 4096 });
  private readonly clients = new Map<string, Set<Client>>();
  private readonly unsubscribe: Array<() => void> = [];

  constructor(private readonly deps: NotificationHubDeps) {
    this.unsubscribe.push(
      deps.bus.on('notice', (n) => this.deliver(n)),
      deps.bus.on('revoke', (e) => {
        if (e.kind === 'user_disabled') this.closeWhere((c) => c.user === e.user, 'account disabled');
      }),
      deps.credentials.onRevoked((r) => {
        const ids = new Set(r.tokenIds);
        this.closeWhere((c) => c.user === r.user && ids.has(c.tokenId), REVOCATION_WORDS[r.reason]);
      }),
    );
  }

  async handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    let who: { user: string; tokenId: string; token: string; expiresAt?: Date };
    try {
      const url = requestUrl(req.url);
      const header = req.headers.authorization;
      const token = url.searchParams.get('token') ?? (header?.startsWith('Bearer ') ? header.slice(7).trim() : undefined);
      if (!token) throw new Error('no token');
      const a = await this.deps.auth.authenticateToken(token);
      const expiresAt = await this.deps.credentials.tokenExpiry(token);
      who = { user: a.user.name, tokenId: a.tokenId, token, ...(expiresAt ? { expiresAt } : {}) };
    } catch {
      socket.end('HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n{"error":{"code":"UNAUTHENTICATED","message":"sign in first"}}');
      return;
    }
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      const client: Client = { ws, user: who.user, tokenId: who.tokenId, token: who.token, queue: Promise.resolve(), cancelExpiry: () => undefined, closed: false };
      const set = this.clients.get(who.user) ?? new Set<Client>();
      set.add(client);
      this.clients.set(who.user, set);
      if (who.expiresAt) client.cancelExpiry = this.deps.clock.setTimer(who.expiresAt, () => this.closeClient(client, 'session expired'));
      ws.on('close', () => this.forget(client));
      ws.on('error', (err) => this.deps.log.debug({ err, user: who.user }, 'websocket error'));
      // Clients only listen; anything they send is ignored.
      ws.on('message', () => undefined);
      ws.send(JSON.stringify({ type: 'hello', user: who.user }));
    });
  }

  deliver(n: Notice): void {
    const payload = JSON.stringify(noticeMessage(n));
    for (const user of new Set(n.to)) {
      for (const client of this.clients.get(user) ?? []) {
        client.queue = client.queue.then(() => this.push(client, payload));
      }
    }
  }

  /** Sends one notice if the socket's token is still good; closes the socket otherwise. */
  private async push(client: Client, payload: string): Promise<void> {
    if (client.closed) return;
    const valid = await this.deps.auth.authenticateToken(client.token).then(
      (a) => a.user.name === client.user,
      () => false,
    );
    if (client.closed) return;
    if (!valid) {
      this.closeClient(client, 'token no longer valid');
      return;
    }
    if (client.ws.readyState === client.ws.OPEN) client.ws.send(payload);
  }

  private closeWhere(match: (c: Client) => boolean, reason: string): void {
    for (const set of [...this.clients.values()]) {
      for (const client of [...set]) if (match(client)) this.closeClient(client, reason);
    }
  }

  private closeClient(client: Client, reason: string): void {
    if (client.closed) return;
    this.forget(client);
    client.ws.close(WS_CLOSE_UNAUTHORIZED, reason);
    this.deps.log.info({ user: client.user, tokenId: client.tokenId, reason }, 'notification socket closed');
  }

  /** No more pushes to this socket, whoever closed it. */
  private forget(client: Client): void {
    client.closed = true;
    client.cancelExpiry();
    const set = this.clients.get(client.user);
    if (!set) return;
    set.delete(client);
    if (set.size === 0) this.clients.delete(client.user);
  }

  connectedUsers(): number {
    return this.clients.size;
  }

  close(): void {
    for (const off of this.unsubscribe) off();
    for (const set of this.clients.values()) {
      for (const client of set) {
        client.cancelExpiry();
        client.closed = true;
        client.ws.terminate();
      }
    }
    this.clients.clear();
    this.wss.close();
  }
}
