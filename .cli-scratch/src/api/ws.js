import { WebSocketServer } from 'ws';
/** Turns a notice into the message a client sees: `{type, ...payload}` without the address list. */
export function noticeMessage(n) {
    const { kind, to: _to, ...rest } = n;
    return { type: kind, ...rest };
}
/**
 * The WebSocket stream `/api/v1/events`: one socket per signed-in client, every open socket
 * of an addressed user receives each notice. Authentication uses the same bearer tokens as
 * the API (header, or `?token=` for browsers, which cannot set headers on a WebSocket).
 */
export class NotificationHub {
    auth;
    log;
    wss = new WebSocketServer({ noServer: true, maxPayload: 4096 });
    sockets = new Map();
    unsubscribe;
    constructor(auth, bus, log) {
        this.auth = auth;
        this.log = log;
        this.unsubscribe = bus.on('notice', (n) => this.deliver(n));
    }
    async handleUpgrade(req, socket, head) {
        const url = new URL(req.url ?? '/', 'http://x');
        const token = url.searchParams.get('token') ?? (req.headers.authorization?.startsWith('Bearer ') ? req.headers.authorization.slice(7) : undefined);
        let user;
        try {
            if (!token)
                throw new Error('no token');
            user = (await this.auth.authenticateToken(token)).user.name;
        }
        catch {
            socket.end('HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n{"error":{"code":"UNAUTHENTICATED","message":"sign in first"}}');
            return;
        }
        this.wss.handleUpgrade(req, socket, head, (ws) => {
            const set = this.sockets.get(user) ?? new Set();
            set.add(ws);
            this.sockets.set(user, set);
            ws.on('close', () => {
                set.delete(ws);
                if (set.size === 0)
                    this.sockets.delete(user);
            });
            ws.on('error', (err) => this.log.debug({ err, user }, 'websocket error'));
            // Clients only listen; anything they send is ignored.
            ws.on('message', () => undefined);
            ws.send(JSON.stringify({ type: 'hello', user }));
        });
    }
    deliver(n) {
        const payload = JSON.stringify(noticeMessage(n));
        for (const user of new Set(n.to)) {
            for (const ws of this.sockets.get(user) ?? []) {
                if (ws.readyState === ws.OPEN)
                    ws.send(payload);
            }
        }
    }
    connectedUsers() {
        return this.sockets.size;
    }
    close() {
        this.unsubscribe();
        for (const set of this.sockets.values())
            for (const ws of set)
                ws.terminate();
        this.sockets.clear();
        this.wss.close();
    }
}
//# sourceMappingURL=ws.js.map