#!/usr/bin/env node
// The project's own small web app: the target behind the browser gateway's tests (issue 15).
// Plain Node (node:http / node:https) plus the `ws` package for the WebSocket, nothing else.
// Normally started by webapp.sh, which makes its dir, certificate and secrets and prints the
// JSON line; it can also run on its own:
//   node test/targets/webapp.mjs [--port N] [--dir DIR] [--user U] [--password P] [--token T]
//                                [--cert server.pem --key server-key.pem]
// Environment variables WEBAPP_PORT, WEBAPP_DIR, WEBAPP_USER, WEBAPP_PASSWORD, WEBAPP_TOKEN,
// WEBAPP_CERT, WEBAPP_KEY are the same options (arguments win). Port 0 (the default) lets the
// kernel pick. Once listening it prints one JSON line on stdout (scheme, port, user, password,
// token) and, with --dir, writes DIR/webapp.port (what webapp.sh waits for).
//
// Routes (see README.md): /login (form + CSRF cookie), / (needs app_session), /logout, /echo,
// /basic, /bearer, /header, /ws (WebSocket), /sse, /big, /page, /set-domain-cookie,
// /redirect-absolute, /redirect-elsewhere, /stats. Every request is logged on stdout.
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { clearInterval, setInterval, setTimeout } from 'node:timers';
import { URLSearchParams } from 'node:url';
import { parseArgs } from 'node:util';
import { WebSocketServer } from 'ws';

const VERSION = `gatehouse-webapp/1 (node ${process.version})`;
const TICK_MS = 100;
const BIG_BYTES = 5 * 1024 * 1024;
const BIG_CHUNK = 64 * 1024;
const BIG_EVERY_MS = 50;
const MAX_BODY = 1024 * 1024;

const { values: args } = parseArgs({
  options: {
    port: { type: 'string' },
    dir: { type: 'string' },
    user: { type: 'string' },
    password: { type: 'string' },
    token: { type: 'string' },
    cert: { type: 'string' },
    key: { type: 'string' },
  },
});
const env = process.env;
const opt = (name) => args[name] ?? env[`WEBAPP_${name.toUpperCase()}`];
const secret = () => randomBytes(16).toString('hex');

const config = {
  port: Number(opt('port') ?? 0),
  dir: opt('dir') ?? null,
  user: opt('user') ?? 'webuser',
  password: opt('password') ?? secret(),
  token: opt('token') ?? secret(),
  cert: opt('cert') ?? null,
  key: opt('key') ?? null,
};
if ((config.cert === null) !== (config.key === null)) throw new Error('--cert and --key go together');
const scheme = config.cert ? 'https' : 'http';

/** app_session value -> user name. */
const sessions = new Map();
/** What is open right now and what has happened, for teardown tests (GET /stats). */
const stats = {
  requests: 0,
  logins: 0,
  failedLogins: 0,
  csrfRejections: 0,
  ws: { open: 0, opened: 0, closed: 0 },
  sse: { open: 0, opened: 0, closed: 0 },
  big: { open: 0, opened: 0, completed: 0, aborted: 0 },
};

const log = (line) => process.stdout.write(`${new Date().toISOString()} ${line}\n`);

function same(a, b) {
  const x = Buffer.from(String(a));
  const y = Buffer.from(String(b));
  return x.length === y.length && timingSafeEqual(x, y);
}

function cookies(req) {
  const out = {};
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const i = part.indexOf('=');
    if (i <= 0) continue;
    const name = part.slice(0, i).trim();
    // The first of two same-named cookies wins, as in the browser's own ordering (most specific first).
    if (!(name in out)) out[name] = decodeURIComponent(part.slice(i + 1).trim());
  }
  return out;
}

function send(res, status, body, headers = {}) {
  const buf = Buffer.isBuffer(body) ? body : Buffer.from(body);
  res.writeHead(status, { 'Content-Length': buf.length, ...headers });
  res.end(buf);
}

const sendJson = (res, status, value, headers = {}) =>
  send(res, status, `${JSON.stringify(value)}\n`, { 'Content-Type': 'application/json', ...headers });

const escapeHtml = (s) =>
  String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);

const html = (title, body) =>
  `<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(title)}</title></head>\n` +
  `<body>\n${body}\n</body></html>\n`;

const sendHtml = (res, status, title, body, headers = {}) =>
  send(res, status, html(title, body), { 'Content-Type': 'text/html; charset=utf-8', ...headers });

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (c) => {
      size += c.length;
      if (size > MAX_BODY) {
        reject(new Error('body too large'));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

function basicCredentials(req) {
  const m = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(req.headers.authorization ?? '');
  if (!m) return null;
  const decoded = Buffer.from(m[1], 'base64').toString('utf8');
  const i = decoded.indexOf(':');
  return i < 0 ? null : { user: decoded.slice(0, i), password: decoded.slice(i + 1) };
}

// A ~1 KB page for the benchmark: fixed content, so every proxy serves the same bytes.
const PAGE = Buffer.from(
  html(
    'Gatehouse benchmark page',
    '<h1>Gatehouse benchmark page</h1>\n' +
      Array.from(
        { length: 9 },
        (_, i) => `<p>Paragraph ${i + 1}: a small static body, about one kilobyte in all, for requests per second.</p>`,
      ).join('\n'),
  ),
);

const loginPage = (csrf, message = '') =>
  (message ? `<p class="error">${escapeHtml(message)}</p>\n` : '') +
  '<form method="post" action="/login">\n' +
  `<input type="hidden" name="csrf" value="${escapeHtml(csrf)}">\n` +
  '<label>Username <input name="username" autocomplete="username"></label>\n' +
  '<label>Password <input type="password" name="password" autocomplete="current-password"></label>\n' +
  '<button type="submit">Log in</button>\n</form>';

async function login(req, res) {
  if (req.method === 'GET' || req.method === 'HEAD') {
    // A fresh token per form: the POST must carry it both as the field and as the cookie.
    const csrf = secret();
    return sendHtml(res, 200, 'Log in', loginPage(csrf), {
      'Set-Cookie': `csrf=${csrf}; Path=/; HttpOnly; SameSite=Lax`,
      'Cache-Control': 'no-store',
    });
  }
  if (req.method !== 'POST') return send(res, 405, 'method not allowed\n', { Allow: 'GET, POST' });
  const form = new URLSearchParams((await readBody(req)).toString('utf8'));
  const cookieCsrf = cookies(req).csrf;
  if (!cookieCsrf || !same(form.get('csrf') ?? '', cookieCsrf)) {
    stats.csrfRejections++;
    return sendHtml(res, 403, 'Forbidden', '<p>CSRF token missing or does not match the csrf cookie.</p>');
  }
  if (!same(form.get('username') ?? '', config.user) || !same(form.get('password') ?? '', config.password)) {
    stats.failedLogins++;
    const csrf = secret();
    return sendHtml(res, 401, 'Log in', loginPage(csrf, 'Invalid username or password.'), {
      'Set-Cookie': `csrf=${csrf}; Path=/; HttpOnly; SameSite=Lax`,
      'Cache-Control': 'no-store',
    });
  }
  stats.logins++;
  const session = secret();
  sessions.set(session, config.user);
  res.writeHead(302, {
    Location: '/',
    'Set-Cookie': [`app_session=${session}; Path=/; HttpOnly`, 'csrf=; Path=/; Max-Age=0'],
    'Content-Length': 0,
  });
  res.end();
}

function home(req, res) {
  const user = sessions.get(cookies(req).app_session ?? '');
  if (!user) {
    res.writeHead(302, { Location: '/login', 'Content-Length': 0 });
    return res.end();
  }
  sendHtml(
    res,
    200,
    'Home',
    `<h1>Welcome ${escapeHtml(user)}</h1>\n<form method="post" action="/logout"><button>Log out</button></form>`,
    { 'Cache-Control': 'no-store' },
  );
}

function logout(req, res) {
  sessions.delete(cookies(req).app_session ?? '');
  res.writeHead(302, { Location: '/login', 'Set-Cookie': 'app_session=; Path=/; Max-Age=0', 'Content-Length': 0 });
  res.end();
}

async function echo(req, res) {
  const body = await readBody(req);
  sendJson(res, 200, {
    method: req.method,
    url: req.url,
    httpVersion: req.httpVersion,
    headers: req.headers,
    rawHeaders: req.rawHeaders,
    body: body.toString('utf8'),
    remoteAddress: req.socket.remoteAddress,
    scheme,
  });
}

function sse(req, res) {
  stats.sse.open++;
  stats.sse.opened++;
  res.writeHead(200, {
    'Content-Type': 'text/event-stream',
    'Cache-Control': 'no-store',
    // nginx (nginx.sh proxy) would otherwise buffer the stream.
    'X-Accel-Buffering': 'no',
  });
  let n = 0;
  const tick = () => res.write(`id: ${n}\nevent: tick\ndata: tick ${n++}\n\n`);
  tick();
  const timer = setInterval(tick, TICK_MS);
  res.on('close', () => {
    clearInterval(timer);
    stats.sse.open--;
    stats.sse.closed++;
    log(`sse closed after ${n} events`);
  });
}

function big(req, res) {
  stats.big.open++;
  stats.big.opened++;
  res.writeHead(200, {
    'Content-Type': 'application/octet-stream',
    'Content-Length': BIG_BYTES,
    'Content-Disposition': 'attachment; filename="big.bin"',
  });
  let sent = 0;
  let done = false;
  const chunk = Buffer.alloc(BIG_CHUNK, 0x61);
  const finish = (completed) => {
    if (done) return;
    done = true;
    clearInterval(timer);
    stats.big.open--;
    if (completed) stats.big.completed++;
    else stats.big.aborted++;
    log(`big ${completed ? 'completed' : `aborted after ${sent} bytes`}`);
  };
  const timer = setInterval(() => {
    const n = Math.min(BIG_CHUNK, BIG_BYTES - sent);
    sent += n;
    if (sent >= BIG_BYTES) {
      res.end(chunk.subarray(0, n));
      finish(true);
    } else {
      res.write(chunk.subarray(0, n));
    }
  }, BIG_EVERY_MS);
  res.on('close', () => finish(sent >= BIG_BYTES && res.writableFinished));
}

function redirect(res, location) {
  res.writeHead(302, { Location: location, 'Content-Length': 0 });
  res.end();
}

function authFailed(res, challenge, what) {
  const headers = challenge ? { 'WWW-Authenticate': challenge } : {};
  sendJson(res, 401, { ok: false, error: `${what} required` }, headers);
}

async function handle(req, res) {
  stats.requests++;
  const path = new URL(req.url ?? '/', 'http://x').pathname;
  switch (path) {
    case '/':
      return home(req, res);
    case '/login':
      return login(req, res);
    case '/logout':
      return logout(req, res);
    case '/echo':
      return echo(req, res);
    case '/basic': {
      const c = basicCredentials(req);
      if (!c || !same(c.user, config.user) || !same(c.password, config.password)) {
        return authFailed(res, 'Basic realm="webapp", charset="UTF-8"', 'basic auth');
      }
      return sendJson(res, 200, { ok: true, auth: 'basic', user: c.user });
    }
    case '/bearer': {
      const m = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '');
      if (!m || !same(m[1], config.token)) return authFailed(res, 'Bearer realm="webapp"', 'bearer token');
      return sendJson(res, 200, { ok: true, auth: 'bearer' });
    }
    case '/header': {
      if (!same(req.headers['x-api-key'] ?? '', config.token)) return authFailed(res, null, 'X-Api-Key');
      return sendJson(res, 200, { ok: true, auth: 'header' });
    }
    case '/sse':
      return sse(req, res);
    case '/big':
      return big(req, res);
    case '/page':
      return send(res, 200, PAGE, { 'Content-Type': 'text/html; charset=utf-8' });
    case '/set-domain-cookie':
      res.writeHead(200, {
        'Content-Type': 'text/plain',
        'Set-Cookie': ['wide=1; Domain=apps.localhost; Path=/', 'wider=1; Domain=localhost; Path=/', 'narrow=1; Path=/'],
        'Content-Length': 3,
      });
      return res.end('ok\n');
    case '/redirect-absolute':
      return redirect(res, `${scheme}://127.0.0.1:${server.address().port}/echo`);
    case '/redirect-elsewhere':
      return redirect(res, 'https://evil.example/');
    case '/stats':
      return sendJson(res, 200, { ...stats, sessions: sessions.size });
    case '/ws':
      return send(res, 426, 'WebSocket upgrade required\n', { Upgrade: 'websocket', Connection: 'Upgrade' });
    default:
      return send(res, 404, 'not found\n', { 'Content-Type': 'text/plain' });
  }
}

const onRequest = (req, res) => {
  const started = process.hrtime.bigint();
  res.on('close', () => {
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    log(`${req.socket.remoteAddress} "${req.method} ${req.url} HTTP/${req.httpVersion}" ${res.statusCode} ${ms.toFixed(1)}ms`);
  });
  handle(req, res).catch((err) => {
    log(`error: ${err?.stack ?? err}`);
    if (!res.headersSent) send(res, 500, 'internal error\n');
    else res.destroy();
  });
};

const server = config.cert
  ? https.createServer({ cert: readFileSync(config.cert), key: readFileSync(config.key) }, onRequest)
  : http.createServer(onRequest);

// /ws: `tick N` every 100 ms, every text message echoed back as is; the message `headers`
// answers with the upgrade request's headers as JSON (what a gateway injected).
const wss = new WebSocketServer({ noServer: true });
server.on('upgrade', (req, socket, head) => {
  const path = new URL(req.url ?? '/', 'http://x').pathname;
  if (path !== '/ws') {
    socket.end('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
    return;
  }
  wss.handleUpgrade(req, socket, head, (ws) => {
    stats.ws.open++;
    stats.ws.opened++;
    log(`${req.socket.remoteAddress} "WS ${req.url}" opened`);
    let n = 0;
    const timer = setInterval(() => ws.send(`tick ${n++}`), TICK_MS);
    ws.on('message', (data, isBinary) => {
      if (!isBinary && data.toString() === 'headers') ws.send(JSON.stringify({ headers: req.headers, rawHeaders: req.rawHeaders }));
      else ws.send(data, { binary: isBinary });
    });
    ws.on('close', (code) => {
      clearInterval(timer);
      stats.ws.open--;
      stats.ws.closed++;
      log(`WS closed (${code}) after ${n} ticks`);
    });
    ws.on('error', () => {});
  });
});

server.on('clientError', (_err, socket) => socket.destroy());

server.listen(config.port, '127.0.0.1', () => {
  const port = server.address().port;
  const ready = { kind: 'webapp', host: '127.0.0.1', port, pid: process.pid, scheme, user: config.user,
    password: config.password, token: config.token, version: VERSION };
  process.stdout.write(`${JSON.stringify(ready)}\n`);
  if (config.dir) {
    // Written whole and then renamed: webapp.sh reads it as soon as it exists.
    writeFileSync(`${config.dir}/webapp.port.tmp`, `${port}\n`);
    renameSync(`${config.dir}/webapp.port.tmp`, `${config.dir}/webapp.port`);
  }
});

for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => {
    for (const ws of wss.clients) ws.terminate();
    server.closeAllConnections?.();
    server.close(() => process.exit(0));
    setTimeout(() => process.exit(0), 1000).unref();
  });
}
