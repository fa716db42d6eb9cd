/**
 * Data-path workers: the doors' connections served by several processes, one per core,
 * while the broker, the engine, the store and the audit stay in this (the primary) process.
 *
 * The primary binds each listener and hands every accepted TCP connection, before a byte is
 * read, to the worker that holds the fewest of that listener's connections
 * (`subprocess.send(message, socket)`, as Node's cluster module hands them over). The worker
 * runs the door's own code, TLS and relay included; whatever the door asks of its GatewayPort
 * (sign-in, the decision, the target's identity, a session going live or ending) comes back
 * here as a message and is answered by the broker's real port. The broker's decisions reach the sessions the same way: a session's SessionHandle
 * here forwards `close` and `warn` to the worker holding it, and the closes of one
 * synchronous run (a mass teardown) leave as one message per worker.
 *
 * A worker that dies takes its connections with it: its sessions are ended here (reason
 * `error`), those still on their way to it are closed, and a new worker takes its place and
 * its listeners.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { TICKET_KEY_BYTES, type Listener, type ListenerConfig, type ProtocolAdapter, type SessionHandle } from '../broker/adapter.js';
import type { GatewayPort, GatewaySession } from '../broker/port.js';
import type { Provisioner } from '../broker/provisioner.js';
import { refusals } from '../broker/refusals.js';
import { GatehouseError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import type { Protocol, TerminationReason } from '../core/model.js';
import { DOORS } from '../../protocols/registry.js';
import { clientAddress } from '../../protocols/shared/listener.js';
import type { FromWorker, ListenSpec, SessionView, ToWorker } from './messages.js';
import { fromWire, toWire } from './wire.js';

/** Doors whose connections may be served by workers (registry `workers: true`). */
export function servesFromWorkers(door: string): boolean {
  return DOORS.some((d) => d.name === door && 'workers' in d && d.workers === true);
}

/** The connections a worker holds, over all its listeners (a handful). */
function connectionsOf(w: Worker): number {
  let n = 0;
  for (const held of w.held.values()) n += held;
  return n;
}

/** A worker silent this long (no answer to the pings sent every quarter of it) is killed. */
const HANG_MS = 10_000;

/** A worker that dies sooner than this after it was forked counts as dying at start. */
const QUICK_DEATH_MS = 5_000;
/** The second death in a row at start delays the next worker this long, doubling up to RESPAWN_MAX_MS. */
const RESPAWN_FIRST_MS = 250;
const RESPAWN_MAX_MS = 10_000;

/** How long the record of a session the broker closed waits for its worker's final byte counts. */
const CLOSE_ANSWER_MS = 2_000;

interface Worker {
  index: number;
  child: ChildProcess;
  ready: Promise<void>;
  /** Closes queued in this synchronous run, sent together. */
  closing: Array<[string, TerminationReason, string]>;
  /** Closes sent, until the worker reports the sessions' final byte counts. */
  closed: Map<string, { session: GatewaySession; done: () => void }>;
  /** Set when the worker exited (it is being replaced). */
  gone: boolean;
  /** Listeners this worker serves (connections are handed only to these). */
  serving: Set<number>;
  /**
   * Connections handed to it that still count against a listener's limit there, by listener:
   * counted here when handed over (a login in progress counts), ended by its `released`.
   */
  held: Map<number, number>;
  /**
   * Connections sent and not yet written to it, with their listener: Node's channel sends one
   * handle at a time, each after the worker acknowledged the last, and drops the rest if the
   * worker dies first.
   */
  sending: Map<Socket, number>;
  /**
   * This process's copy of the last connection written to it, which Node closes when the worker
   * acknowledges it (and so the next one goes), but not when the worker dies first.
   */
  unacknowledged: { close(): void } | undefined;
  /** When it last said anything (performance.now()); undefined until it is ready. */
  answeredAt: number | undefined;
  /** When it was forked (performance.now()). */
  spawnedAt: number;
  /** Listeners it is starting, by listener: what to do with its `listening` answer. */
  starting: Map<number, (m: Extract<FromWorker, { t: 'listening' }>) => void>;
}

interface RemoteListener {
  spec: ListenSpec;
  port: GatewayPort;
  door: WorkerDoor;
}

interface Held {
  session: GatewaySession;
  worker: Worker;
}

/** `./worker.js` beside this file; from the TypeScript sources (tests), the .ts with the dev loader. */
function workerEntry(): { path: string; execArgv: string[] } {
  const js = fileURLToPath(new URL('./worker.js', import.meta.url));
  if (existsSync(js)) return { path: js, execArgv: [] };
  return {
    path: fileURLToPath(new URL('./worker.ts', import.meta.url)),
    execArgv: ['--import', new URL('../../scripts/ts-register.mjs', import.meta.url).href],
  };
}

export class DataPath {
  readonly count: number;
  private readonly workers: Worker[] = [];
  private readonly listeners = new Map<number, RemoteListener>();
  private readonly sessions = new Map<string, Held>();
  private nextListener = 1;
  private turn = 0;
  private stopping = false;
  /** start() is over: from here on, a worker dying soon after it started is respawned with a delay. */
  private started = false;
  /** Per slot: how many workers in a row died within QUICK_DEATH_MS of starting. */
  private readonly quickDeaths: number[] = [];

  /** A worker that has not answered a ping for this long is taken for hung and killed. */
  private readonly hangMs: number;
  private heartbeat: NodeJS.Timeout | undefined;

  constructor(
    workers: number,
    private readonly log: Logger,
    opts: { hangMs?: number } = {},
  ) {
    this.hangMs = opts.hangMs ?? HANG_MS;
    if (!Number.isInteger(workers) || workers < 1 || workers > 64) throw new GatehouseError('CONFIG_INVALID', `workers: ${workers} is not a number of workers between 1 and 64`);
    this.count = workers;
  }

  /** Forks the workers and waits until each is up. */
  async start(): Promise<void> {
    for (let i = 0; i < this.count; i++) this.workers.push(this.spawn(i));
    await Promise.all(this.workers.map((_, i) => this.readyAt(i)));
    // A worker whose event loop is stuck would neither relay nor end its sessions when the
    // broker says so: one that stops answering pings is killed, which closes its sockets, ends
    // its sessions as errors and brings a replacement.
    this.heartbeat = setInterval(() => this.checkPulse(), Math.max(50, Math.floor(this.hangMs / 4)));
    this.heartbeat.unref();
    this.started = true;
  }

  private checkPulse(): void {
    const now = performance.now();
    for (const w of this.workers) {
      if (w.gone || w.answeredAt === undefined) continue;
      if (now - w.answeredAt > this.hangMs) {
        this.log.error({ worker: w.index, pid: w.child.pid, silentMs: Math.round(now - w.answeredAt) }, 'data-path worker stopped answering; killing it');
        w.answeredAt = undefined;
        w.child.kill('SIGKILL');
        continue;
      }
      this.post(w, { t: 'ping' });
    }
  }

  /** The worker in slot `i` is up; one that died before it was ready is followed by its replacement. */
  private async readyAt(i: number): Promise<void> {
    for (let deaths = 0; ; deaths++) {
      const w = this.workers[i]!;
      try {
        return await w.ready;
      } catch (err) {
        if (deaths >= 2 || this.stopping) throw new GatehouseError('INTERNAL', `data-path worker ${i} could not start (${(err as Error).message})`);
      }
    }
  }

  /**
   * The door `local` (listener `name`) served from the workers, each making it with the options
   * `local` was made with. `local` stays in this process for its provisioner (temporary accounts
   * are made here, next to the broker) and the shape of its stats.
   */
  door(name: string, local: ProtocolAdapter): WorkerDoor {
    if (!servesFromWorkers(name)) throw new GatehouseError('CONFIG_INVALID', `the ${name} door cannot be served from data-path workers yet`);
    return new WorkerDoor(this, name, { ...(local.options ?? {}) }, local, this.log);
  }

  /** Per worker: its pid, the listeners it serves, its live sessions and the connections it holds, logins included (for operators and tests). */
  load(): Array<{ pid: number | undefined; listeners: number; sessions: number; connections: number }> {
    const sessions = [...this.sessions.values()];
    return this.workers.map((w) => ({ pid: w.child.pid, listeners: w.serving.size, sessions: sessions.filter((h) => h.worker === w).length, connections: connectionsOf(w) }));
  }

  /** Ends every worker; live sessions were ended by the broker before. */
  async stop(): Promise<void> {
    this.stopping = true;
    clearInterval(this.heartbeat);
    await Promise.all(
      this.workers.map(
        (w) =>
          new Promise<void>((resolve) => {
            if (w.gone || w.child.exitCode !== null) return resolve();
            const kill = setTimeout(() => w.child.kill('SIGKILL'), 2_000);
            w.child.once('exit', () => {
              clearTimeout(kill);
              resolve();
            });
            this.post(w, { t: 'stop' });
          }),
      ),
    );
  }

  /** Binds `config`'s address and has every worker serve `spec`'s door behind it. */
  async listen(door: WorkerDoor, config: ListenerConfig, build: (id: number, address: ListenSpec['address']) => ListenSpec): Promise<Listener> {
    const server: Server = createServer({ pauseOnConnect: true, noDelay: true });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(config.port, config.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', (err) => this.log.error({ err }, `${door.name} listener error`));
    const id = this.nextListener++;
    // Accepted while the workers start the door (the port is bound already): handed over once they serve it.
    let early: Socket[] | undefined = [];
    server.on('connection', (socket: Socket) => (early ? early.push(socket) : this.handOver(id, socket)));
    const spec = build(id, server.address() as ListenSpec['address']);
    const port = config.broker.portFor({ protocol: spec.protocol as Protocol, loginExample: spec.loginExample }, config.log);
    this.listeners.set(id, { spec, port, door });
    try {
      await Promise.all(this.workers.map((w) => this.listenOn(w, spec)));
    } catch (e) {
      server.close();
      for (const socket of early.splice(0)) this.drop(id, socket, `the data-path workers could not start the ${door.name} listener`);
      early = undefined;
      this.listeners.delete(id);
      for (const w of this.workers) this.post(w, { t: 'unlisten', listener: id });
      throw e;
    }
    const waiting = early;
    early = undefined;
    for (const socket of waiting) this.handOver(id, socket);
    config.log.info({ address: `${spec.address.address}:${spec.address.port}`, workers: this.count }, `${door.name} gateway listening`);
    return {
      address: spec.address,
      close: async () => {
        server.close();
        this.listeners.delete(id);
        for (const w of this.workers) {
          w.serving.delete(id);
          this.post(w, { t: 'unlisten', listener: id });
        }
      },
    };
  }

  private listenOn(w: Worker, spec: ListenSpec): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new GatehouseError('INTERNAL', `data-path worker ${w.index} did not start the ${spec.door} listener`)), 30_000);
      w.starting.set(spec.listener, (m) => {
        clearTimeout(timer);
        if (m.error) return reject(fromWire(m.error));
        w.serving.add(spec.listener);
        resolve();
      });
      this.post(w, { t: 'listen', spec, index: w.index, count: this.count, logLevel: this.log.level });
    });
  }

  /**
   * The worker holding the fewest of this listener's connections gets the connection, unread
   * (then the fewest connections in all; among equals, the next in turn). Each worker holds its
   * share of a listener's maxConnections, so connections in turn alone would let one worker
   * refuse while the other had room: after sessions ended there, or while a burst of logins,
   * not yet sessions, piled up in one.
   */
  private handOver(listener: number, socket: Socket): void {
    const live = this.workers.filter((w) => !w.gone && w.child.connected && w.serving.has(listener));
    // None: between a worker's death and its replacement's start, or every worker gone.
    if (!live.length) return this.drop(listener, socket, 'no data-path worker is serving this listener');
    const first = this.turn++ % live.length;
    let w = live[first]!;
    for (let i = 1; i < live.length; i++) {
      const other = live[(first + i) % live.length]!;
      const [mine, theirs] = [w.held.get(listener) ?? 0, other.held.get(listener) ?? 0];
      if (theirs < mine || (theirs === mine && connectionsOf(other) < connectionsOf(w))) w = other;
    }
    const client = clientAddress(socket);
    this.hold(w, listener, 1);
    w.sending.set(socket, listener);
    // Node takes the descriptor's handle from the socket when it writes it to the channel.
    const handle = (socket as unknown as { _handle?: { close(): void } })._handle;
    const failed = (err: Error): void => {
      this.hold(w, listener, -1);
      this.drop(listener, socket, `data-path worker ${w.index} could not take the connection (${err.message})`, client);
    };
    try {
      w.child.send({ t: 'conn', listener } satisfies ToWorker, socket, (err) => {
        // Not there any more: closed when the worker died (exited).
        if (!w.sending.delete(socket)) return;
        if (err) return failed(err);
        w.unacknowledged = handle;
      });
    } catch (err) {
      w.sending.delete(socket);
      failed(err as Error);
    }
  }

  /** `n` more (or fewer) of `listener`'s connections held by `w`. */
  private hold(w: Worker, listener: number, n: number): void {
    const before = w.held.get(listener) ?? 0;
    const after = Math.max(0, before + n);
    if (after > 0) w.held.set(listener, after);
    else w.held.delete(listener);
  }

  /** A connection no worker can take: closed, and audited like any refusal. */
  private drop(listener: number, socket: Socket, why: string, client = clientAddress(socket)): void {
    this.listeners.get(listener)?.port.refused(client, refusals.internalError(), why);
    socket.destroy();
  }

  private spawn(index: number): Worker {
    const script = workerEntry();
    const child = fork(script.path, [], { execArgv: script.execArgv, serialization: 'advanced', stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    let up: () => void = () => undefined;
    let failed: (err: Error) => void = () => undefined;
    const ready = new Promise<void>((resolve, reject) => ((up = resolve), (failed = reject)));
    ready.catch(() => undefined);
    const w: Worker = { index, child, ready, closing: [], closed: new Map(), gone: false, serving: new Set(), held: new Map(), sending: new Map(), unacknowledged: undefined, answeredAt: undefined, spawnedAt: performance.now(), starting: new Map() };
    // Settles nothing once it said 'ready'.
    child.once('exit', (code, signal) => failed(new Error(`it exited before it was ready (code ${code}, signal ${signal})`)));
    child.on('message', (m: FromWorker) => {
      w.answeredAt = performance.now();
      if (m.t === 'ready') return up();
      this.onMessage(w, m);
    });
    child.on('error', (err) => this.log.error({ err, worker: index }, 'data-path worker error'));
    child.once('exit', (code, signal) => this.exited(w, code, signal));
    return w;
  }

  /** A worker died: its sessions end, a new one takes its place. */
  private exited(w: Worker, code: number | null, signal: NodeJS.Signals | null): void {
    w.gone = true;
    // Connections still queued for it would stay open here, unanswered, for ever.
    for (const [socket, listener] of w.sending) this.drop(listener, socket, `data-path worker ${w.index} stopped before it took the connection`);
    w.sending.clear();
    // Closing a handle twice does nothing: if the worker took this one, Node closed it then.
    w.unacknowledged?.close();
    w.unacknowledged = undefined;
    for (const c of w.closed.values()) c.done();
    w.closed.clear();
    for (const [id, h] of this.sessions) {
      if (h.worker !== w) continue;
      this.sessions.delete(id);
      h.session.end('error', 'Gatehouse: the gateway process serving this session stopped; connect again.');
    }
    if (this.stopping) return;
    this.log.error({ worker: w.index, code, signal }, 'data-path worker exited; starting another');
    for (const l of this.listeners.values()) l.door.workerGone(w.index);
    // Doors that share state between workers (MySQL's live threads) drop what that one held.
    for (const id of this.listeners.keys()) {
      for (const other of this.workers) if (other !== w) this.post(other, { t: 'door', listener: id, payload: { peerGone: w.index } });
    }
    // Listeners it was starting: their listen() waits for the replacement instead.
    const waiting = w.starting;
    // A worker that keeps dying soon after it started is not respawned in a tight loop: the
    // others serve meanwhile. (Not while start() runs: it counts early deaths itself.)
    const quick = performance.now() - w.spawnedAt < QUICK_DEATH_MS;
    const deaths = quick ? (this.quickDeaths[w.index] ?? 0) + 1 : 0;
    this.quickDeaths[w.index] = deaths;
    const delay = this.started && deaths > 1 ? Math.min(RESPAWN_MAX_MS, RESPAWN_FIRST_MS * 2 ** (deaths - 2)) : 0;
    if (delay > 0) this.log.error({ worker: w.index, deaths, delayMs: delay }, 'data-path worker keeps exiting soon after it starts; waiting before the next');
    const respawn = (): void => {
      if (!this.stopping) this.replace(w, waiting);
    };
    if (delay > 0) setTimeout(respawn, delay).unref();
    else respawn();
  }

  /** Starts a worker in `w`'s slot (w died) and has it serve every listener (the starts in `waiting` included). */
  private replace(w: Worker, waiting: Map<number, (m: Extract<FromWorker, { t: 'listening' }>) => void>): void {
    const next = this.spawn(w.index);
    this.workers[w.index] = next;
    void next.ready
      .then(() =>
        Promise.all(
          [...this.listeners.values()].map((l) =>
            this.listenOn(next, l.spec).then(
              () => {
                waiting.get(l.spec.listener)?.({ t: 'listening', listener: l.spec.listener });
                // Doors that share state between workers tell the newcomer what it missed.
                for (const other of this.workers) if (other !== next) this.post(other, { t: 'door', listener: l.spec.listener, payload: { peerJoined: next.index } });
              },
              (err: unknown) => {
                waiting.get(l.spec.listener)?.({ t: 'listening', listener: l.spec.listener, error: toWire(err) });
                throw err;
              },
            ),
          ),
        ),
      )
      .catch((err: unknown) => this.log.error({ err, worker: w.index }, 'a replacement data-path worker could not start its listeners'));
  }

  private post(w: Worker, m: ToWorker): void {
    if (w.gone || !w.child.connected) return;
    w.child.send(m);
  }

  private onMessage(w: Worker, m: FromWorker): void {
    switch (m.t) {
      case 'ready':
      case 'pong':
        return;
      case 'listening':
        w.starting.get(m.listener)?.(m);
        w.starting.delete(m.listener);
        return;
      case 'call':
        return void this.answer(w, m.call, () => this.call(w, m.listener, m.method, m.args));
      case 'live':
        return void this.answer(w, m.call, async () => {
          const h = this.sessions.get(m.session);
          if (!h) throw new GatehouseError('INTERNAL', 'unknown session');
          await h.session.live(this.handle(w, m.session), m.facts);
        });
      case 'discard': {
        const h = this.take(m.session);
        return h?.session.discard(m.code, m.detail);
      }
      case 'operation':
        return this.sessions.get(m.session)?.session.operation(m.facts);
      case 'end': {
        const h = this.take(m.session);
        if (!h) {
          // Ended by the client as the broker closed it: the close's answer (sent after this) has
          // no counts, since the worker had forgotten the session; these are its final ones.
          return this.settled(w, m.session, m.bytesIn, m.bytesOut);
        }
        h.session.bytesIn = m.bytesIn;
        h.session.bytesOut = m.bytesOut;
        return h.session.end(m.reason, m.message);
      }
      case 'closed':
        for (const [id, bytesIn, bytesOut] of m.sessions) this.settled(w, id, bytesIn, bytesOut);
        return;
      case 'bytes':
        for (const [id, bytesIn, bytesOut] of m.sessions) {
          const s = this.sessions.get(id)?.session;
          if (s) {
            s.bytesIn = bytesIn;
            s.bytesOut = bytesOut;
          }
        }
        return;
      case 'refused':
        return this.listeners.get(m.listener)?.port.refused(m.client, m.refusal, m.detail);
      case 'statements':
        return this.listeners.get(m.listener)?.door.statements(m.events);
      case 'stats':
        return this.listeners.get(m.listener)?.door.count(m.delta, w.index);
      case 'released':
        for (const [listener, n] of m.counts) this.hold(w, listener, -n);
        return;
      case 'door': {
        const to = this.workers[m.to];
        if (to && to !== w) this.post(to, { t: 'door', listener: m.listener, payload: m.payload });
        return;
      }
      default: {
        const never: never = m;
        this.log.warn({ message: never }, 'unknown message from a data-path worker');
      }
    }
  }

  /** A session the broker closed has its final byte counts (negative: the worker had none): its record may be written. */
  private settled(w: Worker, id: string, bytesIn: number, bytesOut: number): void {
    const c = w.closed.get(id);
    w.closed.delete(id);
    if (!c) return;
    if (bytesIn >= 0) {
      c.session.bytesIn = bytesIn;
      c.session.bytesOut = bytesOut;
    }
    c.done();
  }

  private take(id: string): Held | undefined {
    const h = this.sessions.get(id);
    this.sessions.delete(id);
    return h;
  }

  private async call(w: Worker, listener: number, method: string, args: unknown[]): Promise<unknown> {
    const l = this.listeners.get(listener);
    if (!l) throw new GatehouseError('INTERNAL', 'the listener is closed');
    const port = l.port;
    switch (method) {
      case 'login':
        return port.login(args[0] as Parameters<GatewayPort['login']>[0]);
      case 'knowsKey':
        return port.knowsKey(args[0] as string, args[1] as string, args[2] as string, args[3] as string);
      case 'needsMfa':
        return port.needsMfa(args[0] as string, args[1] as string);
      case 'verifyTarget':
        return port.verifyTarget(args[0] as string, args[1] as Parameters<GatewayPort['verifyTarget']>[1]);
      case 'open': {
        const r = await port.open(args[0] as Parameters<GatewayPort['open']>[0]);
        if (!r.ok) return r;
        const s = r.session;
        if (w.gone) {
          // The worker died while the decision was made: nobody will take this session live or end it.
          s.end('error', 'Gatehouse: the gateway process serving this connection stopped; connect again.');
          throw new GatehouseError('INTERNAL', 'the data-path worker is gone');
        }
        this.sessions.set(s.id, { session: s, worker: w });
        const view: SessionView = { id: s.id, user: s.user, resource: s.resource, credentials: s.credentials, deadline: s.deadline };
        return { ok: true, session: view };
      }
      default:
        throw new GatehouseError('INTERNAL', `unknown port method ${method}`);
    }
  }

  private async answer(w: Worker, call: number, fn: () => Promise<unknown>): Promise<void> {
    try {
      this.post(w, { t: 'reply', call, ok: true, value: await fn() });
    } catch (e) {
      this.post(w, { t: 'reply', call, ok: false, error: toWire(e) });
    }
  }

  /** The broker's handle on a session in worker `w`. */
  private handle(w: Worker, id: string): SessionHandle {
    return {
      warn: (message) => this.post(w, { t: 'warn', session: id, message }),
      close: (reason, message) => {
        const h = this.take(id);
        if (!h || w.gone) return;
        // Every close of this synchronous run (a thousand in a mass teardown) in one message.
        if (!w.closing.length) {
          process.nextTick(() => {
            const sessions = w.closing.splice(0);
            this.post(w, { t: 'close', sessions });
          });
        }
        w.closing.push([id, reason, message]);
        return new Promise<void>((resolve) => {
          // A worker that does not answer does not hold up the record: its counts so far are kept.
          const timer = setTimeout(() => w.closed.delete(id) && resolve(), CLOSE_ANSWER_MS);
          timer.unref();
          w.closed.set(id, { session: h.session, done: () => (clearTimeout(timer), resolve()) });
        });
      },
    };
  }
}

/** What of a listener's config a worker gets: all but the broker and the logger, which stay here. */
function crossable(config: ListenerConfig): ListenSpec['config'] {
  const { broker: _broker, log: _log, dataPath: _dataPath, ...rest } = config;
  // One ticket key for the listener, the same in every worker: a client resumes on any of them.
  return { ...rest, tls: { ...rest.tls, ticketKey: rest.tls.ticketKey ?? randomBytes(TICKET_KEY_BYTES).toString('base64') } };
}

/** A door served from data-path workers, as `gatehouse serve` and the tests start it. */
export class WorkerDoor implements ProtocolAdapter {
  readonly protocol: Protocol;
  /** The door's counters summed over every worker (the same keys as the in-process door's). */
  readonly stats: Record<string, number>;
  /** Temporary accounts are made in this process, next to the broker, by the door's own provisioner. */
  readonly provisioner?: (port: GatewayPort) => Provisioner;
  private readonly onStatement: ((e: never) => void) | undefined;
  private readonly made: Record<string, unknown>;
  /** Each worker's share of the counters, and which counters are gauges (see ProtocolAdapter.gauges). */
  private readonly byWorker: Array<Record<string, number>> = [];
  readonly gauges: readonly string[];

  constructor(
    private readonly pool: DataPath,
    readonly name: string,
    options: Record<string, unknown>,
    local: ProtocolAdapter,
    private readonly log: Logger,
  ) {
    this.protocol = local.protocol;
    if (local.provisioner) this.provisioner = (port) => local.provisioner!(port);
    const { onStatement, ...rest } = options;
    for (const [k, v] of Object.entries(rest)) {
      if (typeof v === 'function') throw new GatehouseError('CONFIG_INVALID', `${name}: option ${k} cannot be passed to data-path workers`);
    }
    this.made = rest;
    this.onStatement = typeof onStatement === 'function' ? (onStatement as (e: never) => void) : undefined;
    const own = (local as { stats?: Record<string, number> }).stats;
    this.stats = Object.fromEntries(Object.keys(own ?? {}).map((k) => [k, 0]));
    this.gauges = local.gauges ?? [];
  }

  listen(config: ListenerConfig): Promise<Listener> {
    const entry = DOORS.find((d) => d.name === this.name)!;
    return this.pool.listen(this, config, (listener, address) => ({
      listener,
      door: this.name,
      options: this.made,
      statements: this.onStatement !== undefined,
      config: crossable(config),
      address,
      protocol: this.protocol,
      loginExample: entry.loginExample,
    }));
  }


  /** Statements captured in a worker, in the order they were sent. */
  statements(events: unknown[]): void {
    if (!this.onStatement) return;
    for (const e of events) {
      try {
        this.onStatement(e as never);
      } catch (err) {
        this.log.warn({ err }, 'statement hook failed');
      }
    }
  }

  /** A worker's counters moved. */
  count(delta: Record<string, number>, worker: number): void {
    const mine = (this.byWorker[worker] ??= {});
    for (const [k, v] of Object.entries(delta)) {
      this.stats[k] = (this.stats[k] ?? 0) + v;
      mine[k] = (mine[k] ?? 0) + v;
    }
  }

  /** A worker died: what its gauges counted (live things of its own) is gone with it; its counts of events stay. */
  workerGone(worker: number): void {
    const mine = this.byWorker[worker] ?? {};
    for (const k of this.gauges) {
      this.stats[k] = (this.stats[k] ?? 0) - (mine[k] ?? 0);
      mine[k] = 0;
    }
  }
}
