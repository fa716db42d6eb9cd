import WebSocket from 'ws';
import { CliError } from './cli-error.js';
/** States after which waiting is over: access granted, or it never will be. */
const DONE_STATES = new Set(['approved', 'active', 'denied', 'cancelled', 'expired', 'ended']);
export function isSettled(request) {
    return DONE_STATES.has(request.state);
}
const DEFAULT_RECONNECT_MS = [500, 1000, 2000, 4000, 8000];
/**
 * Follows one request on /api/v1/events until it settles, and resolves with its final
 * form. Each time the stream (re)connects the request is also read once over HTTP, so a
 * decision made between creating the request and subscribing is never missed.
 */
export function waitForDecision(opts) {
    const { client, requestId } = opts;
    const delays = opts.reconnectDelaysMs ?? DEFAULT_RECONNECT_MS;
    const url = client.wsUrl('/events');
    return new Promise((resolve, reject) => {
        let lastKey = '';
        let attempt = 0;
        let finished = false;
        let socket;
        let retryTimer;
        const finish = (err, request) => {
            if (finished)
                return;
            finished = true;
            if (retryTimer)
                clearTimeout(retryTimer);
            socket?.removeAllListeners();
            socket?.on('error', () => { });
            socket?.terminate();
            if (err)
                reject(err);
            else
                resolve(request);
        };
        const seen = (request, event) => {
            if (finished || request.id !== requestId)
                return;
            const key = `${request.state}/${request.stage}/${request.reviews.length}`;
            if (key !== lastKey) {
                lastKey = key;
                opts.onUpdate(request, event);
            }
            if (isSettled(request))
                finish(undefined, request);
        };
        const poll = () => {
            client.get(`/requests/${encodeURIComponent(requestId)}`).then((r) => seen(r, 'poll'), (e) => finish(e));
        };
        const dropped = (reason) => {
            if (finished)
                return;
            const delay = delays[attempt++];
            if (delay === undefined) {
                finish(new CliError('NETWORK', `lost the notification stream at ${url} (${reason}); check later with gatehouse requests --mine`));
                return;
            }
            retryTimer = setTimeout(connect, delay);
        };
        const connect = () => {
            const headers = {};
            if (client.token)
                headers.authorization = `Bearer ${client.token}`;
            const ws = new WebSocket(url, { headers, ...(client.caPem !== undefined ? { ca: client.caPem } : {}) });
            socket = ws;
            let why = 'connection closed';
            ws.on('unexpected-response', (_req, res) => {
                const status = res.statusCode ?? 0;
                res.resume();
                if (status === 401)
                    finish(new CliError('UNAUTHENTICATED', 'not signed in, or the session expired; run gatehouse login --user NAME', { status }));
                else if (status === 403)
                    finish(new CliError('FORBIDDEN', `the gateway refused the notification stream (HTTP ${status})`, { status }));
                else {
                    why = `HTTP ${status}`;
                    ws.terminate();
                }
            });
            ws.on('open', () => {
                attempt = 0;
                poll();
            });
            ws.on('message', (data) => {
                let msg;
                try {
                    msg = JSON.parse(data.toString());
                }
                catch {
                    return;
                }
                if (msg.type === 'hello')
                    poll();
                else if (msg.type.startsWith('request_') && isRequestMessage(msg))
                    seen(msg.request, msg.type);
            });
            ws.on('error', (e) => {
                why = e.code ?? e.message;
            });
            ws.on('close', () => dropped(why));
        };
        connect();
    });
}
function isRequestMessage(msg) {
    const r = msg.request;
    return typeof r === 'object' && r !== null && typeof r.id === 'string';
}
//# sourceMappingURL=wait.js.map