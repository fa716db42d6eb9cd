import { chmodSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { AuditLog } from './audit/audit-log.js';
import { createApiServer, type ApiServer, type ApiServerOptions } from './api/server.js';
import { isLoopback } from './core/net.js';
import { AuthService } from './api/auth.js';
import type { ListenerAddress } from './api/deps.js';
import type { Listener, ProtocolAdapter } from './broker/adapter.js';
import { Broker } from './broker/broker.js';
import { SystemClock, type Clock } from './core/clock.js';
import type { GatewayConfig, ListenerName } from './core/config.js';
import { GatehouseError } from './core/errors.js';
import { createLogger, type Logger } from './core/log.js';
import { EventBus } from './events/bus.js';
import { EVENT_FEED_APPLICATION_NAME, PgEventBridge, type PgEventBridgeOptions } from './events/pg-bridge.js';
import { FeedGuard, type FeedGuardOptions } from './broker/feed-guard.js';
import { WebhookSender } from './notify/webhooks.js';
import { ensurePki, type Pki } from './pki/pki.js';
import { loadOrCreateMasterKey } from './secrets/master-key.js';
import { loadAuditKey } from './audit/audit-key.js';
import { generatePassword, hashPassword } from './secrets/passwords.js';
import { Sealer } from './secrets/sealer.js';
import { openStore } from './store/open.js';
import type { Store } from './store/store.js';
import { Engine } from './workflow/engine.js';
import { DOORS, TUNNELED_PROTOCOLS, type DoorName, type TunneledProtocol } from '../protocols/registry.js';
import type { GatewayPort } from './broker/port.js';
import { TunnelDoor } from '../protocols/tunnel/session.js';
import { applyPolicyDir, type PolicySyncResult } from './workflow/policy-sync.js';
import { DataPath, servesFromWorkers } from './dataplane/pool.js';

export interface GatewayOptions {
  clock?: Clock;
  log?: Logger;
  /** Protocol adapters by listener name; the API listener is always built in. */
  adapters?: Partial<Record<DoorName, ProtocolAdapter>>;
  /** Serves the web vault (anything outside /api). */
  web?: ApiServerOptions['fallback'];
  /** Tuning of the cluster event feed (PostgreSQL store only): heartbeat, reconnects, re-check polling. */
  eventFeed?: PgEventBridgeOptions & FeedGuardOptions;
}

export interface Gateway {
  engine: Engine;
  broker: Broker;
  store: Store;
  pki: Pki;
  api: ApiServer;
  addresses: Partial<Record<ListenerName, ListenerAddress>>;
  /** Set on the first run only. */
  firstRunAdmin?: { user: string; password?: string; fromFile: boolean };
  policies?: PolicySyncResult;
  /** The cluster event feed (PostgreSQL store only). */
  eventFeed?: PgEventBridge;
  /** The data-path workers, when the config has more than one. */
  dataPath?: DataPath;
  close(): Promise<void>;
}

/** The composition root: everything `gatehouse serve` runs, in one process. */
export async function startGateway(cfg: GatewayConfig, opts: GatewayOptions = {}): Promise<Gateway> {
  const clock = opts.clock ?? new SystemClock();
  const log = opts.log ?? createLogger();
  mkdirSync(cfg.dataDir, { recursive: true, mode: 0o700 });
  chmodSync(cfg.dataDir, 0o700);
  const sealer = new Sealer(loadOrCreateMasterKey({ dataDir: cfg.dataDir }));
  const store = cfg.storeUrl ? await openStore({ kind: 'postgres', url: cfg.storeUrl }) : openStore({ path: join(cfg.dataDir, 'gatehouse.db') });
  const bus = new EventBus();
  const auditKey = await loadAuditKey({ file: cfg.auditKeyFile, store, legacyKey: () => sealer.deriveKey('gatehouse/audit-mac/v1') });
  const audit = new AuditLog({
    store, key: auditKey, clock, node: cfg.nodeName,
    // Checkpoints leave the database: the log stream and the webhooks carry them.
    onCheckpoint: (checkpoint) => {
      log.info({ checkpoint }, 'audit checkpoint');
      bus.publishNotice({ kind: 'audit_checkpoint', checkpoint, to: [] });
    },
  });
  const engine = new Engine({ store, clock, bus, audit, sealer, log, config: { warnBeforeMs: cfg.warnBeforeMinutes * 60_000 } });
  const hostnames = [...cfg.hostnames, ...Object.values(cfg.listen).map((l) => l.host).filter((h) => h !== '0.0.0.0' && h !== '::')];
  // Every app origin of the browser door is a name below the apps domain.
  if (cfg.listen.http) hostnames.push(`*.${cfg.http.appsDomain}`);
  const pki = await ensurePki(cfg.certDir, { hostnames: [...new Set(hostnames)], clock });

  const firstRunAdmin = await ensureAdmin(engine, cfg);
  let policies: PolicySyncResult | undefined;
  if (cfg.policiesDir && existsSync(cfg.policiesDir)) {
    policies = await applyPolicyDir(engine, cfg.policiesDir);
    for (const [res, missing] of Object.entries(policies.missingSecrets)) log.warn({ resource: res, missing }, 'policy refers to secrets that are not set');
  }
  await engine.sweep();

  // Gateways sharing a PostgreSQL store tell each other about revocations and notices.
  const bridge = cfg.storeUrl ? new PgEventBridge(cfg.storeUrl, bus, log, { applicationName: `${EVENT_FEED_APPLICATION_NAME} ${cfg.nodeName}`, ...opts.eventFeed }) : undefined;
  await bridge?.start();
  const auth = new AuthService(engine);
  const broker = new Broker({ engine, log, node: cfg.nodeName, failures: auth.failures });
  // Without the feed, revocations made on other nodes go unheard: live sessions are re-checked against the store.
  const guard = bridge ? new FeedGuard((why) => broker.recheckAll(why), clock, log, opts.eventFeed) : undefined;
  if (bridge && guard) {
    bridge.onFeed((state, why) => guard.feed(state, why));
    guard.start();
    guard.feed(bridge.feed, 'down at start');
  }
  const webhooks = new WebhookSender(cfg.webhooks, { clock, log });
  webhooks.attach(bus);
  const addresses: Partial<Record<ListenerName, ListenerAddress>> = {};
  const apiListen = cfg.listen.api;
  if (!apiListen) throw new GatehouseError('CONFIG_INVALID', 'listen.api: the API listener cannot be turned off');
  const api = createApiServer(
    { engine, auth, log, listeners: addresses, caPath: pki.caPath, appsDomain: cfg.http.appsDomain, tunnels: tunnelDoor(broker, log), sessions: { kill: (id, by) => broker.kill(id, by) }, apiTokenTtlMs: cfg.apiTokenTtlDays * 86_400_000 },
    { ...(isLoopback(apiListen.host) ? {} : { tls: { cert: pki.certPem, key: pki.keyPem } }), ...(opts.web ? { fallback: opts.web } : {}) },
  );
  // Notices made on other nodes, for the clients connected to this one.
  const offRemote = bus.on('remoteNotice', (n) => api.hub.deliver(n));
  const listeners: Listener[] = [];
  // Doors that can serve from data-path workers do when there are several (src/dataplane).
  const dataPath = cfg.workers > 1 ? new DataPath(cfg.workers, log) : undefined;
  const closeAll = async (): Promise<void> => {
    await Promise.allSettled(listeners.map((l) => l.close()));
    offRemote();
    guard?.stop();
    await broker.shutdown();
    await dataPath?.stop();
    await bridge?.stop();
    await api.close();
    webhooks.stop();
    engine.stop();
    await store.close();
  };
  try {
    const a = await api.listen(apiListen.host, apiListen.port);
    addresses.api = { host: apiListen.host, port: a.port };
    await dataPath?.start();
    for (const [name, own] of Object.entries(opts.adapters ?? {}) as Array<[DoorName, ProtocolAdapter]>) {
      const adapter = dataPath && servesFromWorkers(name) ? dataPath.door(name, own) : own;
      // Provisioners serve with the listener off too: accounts made earlier must still be removable.
      registerProvisioner(broker, adapter, name, log);
      const at = cfg.listen[name];
      if (!at) continue;
      const l = await adapter.listen({
        // The one place a door's log lines get `protocol`; doors log with the logger they are given.
        host: at.host, port: at.port, broker, log: log.child({ protocol: adapter.protocol }),
        tls: { cert: pki.certPem, key: pki.keyPem, ca: pki.caCertPem, rsaKey: pki.rsaKeyPem }, sshHostKey: pki.sshHostKeyPem,
        allowPlaintext: cfg.allowPlaintextOnLoopback && isLoopback(at.host),
        http: { appsDomain: cfg.http.appsDomain, vaultUrl: vaultUrl(addresses.api!, apiListen.host) },
      });
      listeners.push(l);
      addresses[name] = { host: at.host, port: l.address.port };
    }
  } catch (e) {
    await closeAll();
    throw e;
  }
  // The first JIT sweep finishes what a crash left (ended grants, orphaned accounts); it runs
  // in the background so an unreachable target cannot hold the gateway's start-up.
  void broker.jit.start().catch((err: unknown) => log.error({ err }, 'the first JIT sweep failed'));
  const gw: Gateway = { engine, broker, store, pki, api, addresses, close: closeAll };
  if (bridge) gw.eventFeed = bridge;
  if (dataPath) gw.dataPath = dataPath;
  if (firstRunAdmin) gw.firstRunAdmin = firstRunAdmin;
  if (policies) gw.policies = policies;
  return gw;
}

/** Hands the broker a door's maker of temporary accounts, once per protocol. */
export function registerProvisioner(broker: Broker, adapter: ProtocolAdapter, name: DoorName, log: Logger): void {
  if (!adapter.provisioner || broker.jit.provisionerFor(adapter.protocol)) return;
  const entry = DOORS.find((d) => d.name === name);
  broker.jit.register(adapter.provisioner(broker.portFor({ protocol: adapter.protocol, loginExample: entry?.loginExample ?? 'USER:RESOURCE' }, log.child({ protocol: adapter.protocol, jit: true }))));
}

/** The tunnel door on the API listener, one port per tunneled protocol (tcp, rdp). */
function tunnelDoor(broker: Broker, log: Logger): TunnelDoor {
  const example = 'gatehouse tunnel RESOURCE --port 0';
  const ports = Object.fromEntries(TUNNELED_PROTOCOLS.map((p) => [p, broker.portFor({ protocol: p, loginExample: example }, log.child({ protocol: p }))]));
  return new TunnelDoor(ports as Record<TunneledProtocol, GatewayPort>);
}

/** The vault's address as a browser reaches it (the API listener serves it). */
function vaultUrl(api: { host: string; port: number }, configuredHost: string): string {
  const loopback = isLoopback(configuredHost);
  const host = api.host === '0.0.0.0' || api.host === '::' ? 'localhost' : api.host.includes(':') ? `[${api.host}]` : api.host;
  return `${loopback ? 'http' : 'https'}://${host}:${api.port}/`;
}

/** On an empty store: create `admin` with a one-time password (or one read from a file). */
async function ensureAdmin(engine: Engine, cfg: GatewayConfig): Promise<Gateway['firstRunAdmin']> {
  if ((await engine.ctx.store.countUsers()) > 0) return undefined;
  const fromFile = cfg.adminPasswordFile !== undefined;
  const password = fromFile ? readFileSync(cfg.adminPasswordFile!, 'utf8').trim() : generatePassword();
  if (password.length < 8) throw new GatehouseError('CONFIG_INVALID', `${cfg.adminPasswordFile}: the admin password must have at least 8 characters`);
  await engine.ctx.store.putUser({
    id: 'admin', name: 'admin', admin: true, disabled: false, teams: [], totpConfirmed: false, sshKeys: [],
    createdAt: engine.ctx.clock.now(), passwordHash: await hashPassword(password),
  });
  await engine.ctx.audit.record('system', 'user.create', 'admin', { admin: true, firstRun: true });
  return fromFile ? { user: 'admin', fromFile } : { user: 'admin', password, fromFile };
}
