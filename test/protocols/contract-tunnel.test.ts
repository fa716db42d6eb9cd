/**
 * The tunnel door against the conformance suite: a `tcp` resource in front of a real
 * PostgreSQL, reached with the `pg` client through a local listener whose connections are
 * carried exactly as `gatehouse tunnel` carries them (carryConnection from the CLI). The
 * tunnel's control socket is opened with the suite's password or ticket; the gateway ending
 * the tunnel is its control socket closing with 1008 and the reason. Target logins are the
 * server's own `connection authorized` lines (the door's reachability probe never logs in).
 *
 * Not applicable here: the target identity case. A raw TCP tunnel carries the target's own
 * protocol, TLS included, end to end; the gateway has no certificate of the target to pin.
 */
import { readFileSync } from 'node:fs';
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer, type AddressInfo, type Server as NetServer } from 'node:net';
import pg from 'pg';
import { afterAll, beforeAll } from 'vitest';
import WebSocket from 'ws';
import { carryConnection } from '../../src/cli/actions/tunnel.js';
import { silentLogger } from '../../src/core/log.js';
import { CONNECT_PATH, OPEN_PATH, SECRET_SCHEME, type ControlMessage } from '../../protocols/tunnel/codec.js';
import { TunnelDoor } from '../../protocols/tunnel/session.js';
import { startPostgres, type PostgresTarget } from '../targets/index.js';
import { doorContract } from './contract.js';
import { refusalCodeIn, startContractGateway, type Closed, type DoorDriver } from './contract-driver.js';

let target: PostgresTarget;
beforeAll(async () => {
  target = await startPostgres();
});
afterAll(async () => {
  await target?.stop();
});

interface TunnelConn {
  control: WebSocket;
  local: NetServer;
  client: pg.Client;
  closed: Promise<Closed>;
}

async function tunnelDriver(): Promise<DoorDriver<TunnelConn>> {
  const { gw, auth, stop } = await startContractGateway();
  const example = 'gatehouse tunnel RESOURCE';
  const door = new TunnelDoor({ tcp: gw.broker.portFor({ protocol: 'tcp', loginExample: example }, silentLogger), rdp: gw.broker.portFor({ protocol: 'rdp', loginExample: example }, silentLogger) });
  // The API listener's part in it: WebSocket upgrades on the tunnel paths go to the door.
  const api: Server = createHttpServer((_req, res) => res.end());
  api.on('upgrade', (req, socket, head) => void door.upgrade(req, socket, head));
  await new Promise<void>((r) => api.listen(0, '127.0.0.1', r));
  const base = `ws://127.0.0.1:${(api.address() as AddressInfo).port}`;
  const conns = new Set<TunnelConn>();
  const loginLine = new RegExp(`connection authorized: user=${target.user} `, 'g');

  return {
    door: 'tunnel',
    gw,
    auth,
    teardownWire: 'tunnel 1008',
    bogusPin: 'tls-sha256:00',
    async resource(name, settings = {}, opts = {}) {
      await gw.addResource({ name, type: 'database', protocol: 'tcp', host: target.host, port: opts.port ?? target.port, settings });
    },
    async connect(user, resource, secret) {
      const control = new WebSocket(`${base}${OPEN_PATH}?login=${encodeURIComponent(`${user}:${resource}`)}&protocol=tcp`, { headers: { authorization: `${SECRET_SCHEME} ${secret}` } });
      control.on('error', () => {});
      const ready = await new Promise<ControlMessage | { refused: string }>((resolve) => {
        control.once('unexpected-response', (_req, res) => {
          let body = '';
          res.on('data', (d: Buffer) => (body += d.toString()));
          res.on('end', () => {
            const e = (JSON.parse(body) as { error: { code: string; message: string; hint?: string } }).error;
            resolve({ refused: `Gatehouse: ${e.message} (${e.code})${e.hint ? ` To fix: ${e.hint}` : ''}` });
          });
        });
        control.once('message', (d) => resolve(JSON.parse(String(d)) as ControlMessage));
      });
      if ('refused' in ready) return { ok: false, code: refusalCodeIn(ready.refused) ?? 'unknown', message: ready.refused };
      if (ready.type !== 'ready') throw new Error(`unexpected control message ${JSON.stringify(ready)}`);
      const ended = new Promise<string>((resolve) => control.on('message', (d) => {
        const m = JSON.parse(String(d)) as ControlMessage;
        if (m.type === 'ended') resolve(m.message);
      }));
      const closed = new Promise<Closed>((resolve) => control.once('close', (code, reason) => {
        const at = performance.now();
        void Promise.race([ended, new Promise<string>((r) => setTimeout(() => r(''), 200))]).then((message) => resolve({ message: `${reason.toString()}\n${message}`, wire: `tunnel ${code}`, at }));
      }));
      // The CLI's side: a local listener, each connection carried over its own WebSocket.
      const local = createServer({ allowHalfOpen: true }, (sock) => void carryConnection(sock, `${base}${CONNECT_PATH}`, ready.token, {}, () => {}));
      await new Promise<void>((r) => local.listen(0, '127.0.0.1', r));
      const client = new pg.Client({ host: '127.0.0.1', port: (local.address() as AddressInfo).port, user: target.user, password: target.password, database: target.database, ssl: false });
      client.on('error', () => {});
      await client.connect();
      const c = { control, local, client, closed };
      conns.add(c);
      return { ok: true, conn: c };
    },
    async run(c) {
      const r = await c.client.query('select 1 as n');
      if (r.rows[0]?.n !== 1) throw new Error(`unexpected result ${JSON.stringify(r.rows)}`);
    },
    waitClosed: (c) => c.closed,
    async close(c) {
      await c.client.end().catch(() => undefined);
      c.control.close(1000);
      c.local.close();
    },
    async targetLogins() {
      return (readFileSync(target.log, 'utf8').match(loginLine) ?? []).length;
    },
    async stop() {
      for (const c of conns) {
        await c.client.end().catch(() => undefined);
        c.control.terminate();
        c.local.close();
      }
      api.closeAllConnections();
      await new Promise<void>((r) => api.close(() => r()));
      await stop();
    },
  };
}

doorContract('Tunnel', tunnelDriver, { targetIdentity: false });
