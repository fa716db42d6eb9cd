/**
 * A data-path worker (see pool.ts): serves the connections the primary hands it with the
 * doors' own code. Its GatewayPort is answered by the primary; it never opens the store.
 *
 * Started by DataPath with `child_process.fork` and an IPC channel; not a command of its own.
 */
import type { Socket } from 'node:net';
import type { DataPathWorker, Listener, ProtocolAdapter, SessionHandle } from '../broker/adapter.js';
import type { GatewayPort, GatewaySession, OpenOutcome, SessionFacts } from '../broker/port.js';
import { parseLoginName } from '../broker/login.js';
import { refusals, type RefusalCode } from '../broker/refusals.js';
import { SystemClock } from '../core/clock.js';
import { createLogger, type Logger } from '../core/log.js';
import type { Protocol, Resource, TargetCredentials, TerminationReason } from '../core/model.js';
import { DOORS } from '../../protocols/registry.js';
import type { FromWorker, ListenSpec, PortMethod, SessionView, ToWorker } from './messages.js';
import { fromWire, toWire } from './wire.js';

/** From the primary's stop to exit: the last goodbyes and Terminates go out. */
const STOP_GRACE_MS = 400;

const send = (m: FromWorker): void => {
  if (process.connected) process.send!(m);
};

const clock = new SystemClock();
const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
let nextCall = 1;

function call(m: { t: 'call'; listener: number; method: PortMethod; args: unknown[] } | { t: 'live'; session: string; facts: SessionFacts }): Promise<unknown> {
  const id = nextCall++;
  return new Promise((resolve, reject) => {
    pending.set(id, { resolve, reject });
    send({ ...m, call: id });
  });
}

/** Live sessions of this worker, by id, with the door's handle. */
const live = new Map<string, { session: RemoteSession; handle: SessionHandle }>();

/**
 * How often the byte counts of live sessions reach the primary's sessions (what the API shows
 * of a live session). A session's end carries its exact counts either way: the worker sends
 * them with an end it saw, and answers the broker's close with them.
 */
const BYTES_EVERY_MS = 1_000;

/** Sessions whose byte counts moved since the last report: sent together, one message. */
const movedBytes: RemoteSession[] = [];
function reportBytes(): void {
  const sessions = movedBytes.splice(0).map((m): [string, number, number] => {
    m.moved = false;
    return [m.id, m.bytesIn, m.bytesOut];
  });
  send({ t: 'bytes', sessions });
}

class RemoteSession implements GatewaySession {
  readonly id: string;
  readonly user: string;
  readonly resource: Resource;
  readonly credentials: TargetCredentials | undefined;
  readonly deadline: Date | undefined;
  private inCount = 0;
  private outCount = 0;
  /** Waiting in movedBytes for the next report. */
  moved = false;
  private over = false;

  // The door adds to these per chunk (a flag test there); the primary's session gets them every BYTES_EVERY_MS.
  get bytesIn(): number {
    return this.inCount;
  }

  set bytesIn(n: number) {
    this.inCount = n;
    if (!this.moved) this.move();
  }

  get bytesOut(): number {
    return this.outCount;
  }

  set bytesOut(n: number) {
    this.outCount = n;
    if (!this.moved) this.move();
  }

  private move(): void {
    this.moved = true;
    if (!movedBytes.length) setTimeout(reportBytes, BYTES_EVERY_MS).unref();
    movedBytes.push(this);
  }

  constructor(v: SessionView) {
    this.id = v.id;
    this.user = v.user;
    this.resource = v.resource as Resource;
    this.credentials = v.credentials as TargetCredentials | undefined;
    this.deadline = v.deadline;
  }

  async live(handle: SessionHandle, facts: SessionFacts = {}): Promise<void> {
    if (this.over) return;
    live.set(this.id, { session: this, handle });
    await call({ t: 'live', session: this.id, facts });
  }

  discard(code: RefusalCode, detail: string): void {
    if (this.over) return;
    this.over = true;
    live.delete(this.id);
    send({ t: 'discard', session: this.id, code, detail });
  }

  operation(facts: SessionFacts): void {
    if (!this.over) send({ t: 'operation', session: this.id, facts });
  }

  end(reason: TerminationReason, message?: string): void {
    if (this.over) return;
    this.over = true;
    const l = live.get(this.id);
    live.delete(this.id);
    send({ t: 'end', session: this.id, reason, message, bytesIn: this.bytesIn, bytesOut: this.bytesOut });
    // As in the broker's own process, where every end of a live session closes its handle: a
    // door that ends a session it could not start (its live record failed) relies on that. The
    // primary does not send this close back, since the end came from here.
    try {
      void l?.handle.close(reason, message || `Gatehouse: session closed (${reason}).`)?.catch(() => undefined);
    } catch (err) {
      log?.warn({ err, session: this.id }, 'adapter close failed');
    }
  }

  /** The broker ended it: the door says goodbye; nothing goes back. */
  closed(): void {
    this.over = true;
    live.delete(this.id);
  }
}

function portFor(spec: ListenSpec, log: Logger): GatewayPort {
  const ask = (method: PortMethod, ...args: unknown[]): Promise<unknown> => call({ t: 'call', listener: spec.listener, method, args });
  return {
    protocol: spec.protocol as Protocol,
    clock,
    log,
    login: (req) => ask('login', req) as ReturnType<GatewayPort['login']>,
    // The name's shape only: a locked user or address is refused by login, which the primary answers.
    precheck: (name) => (parseLoginName(name) ? undefined : refusals.badLoginName(name, spec.loginExample)),
    knowsKey: (name, client, type, blob) => ask('knowsKey', name, client, type, blob) as Promise<boolean>,
    needsMfa: (user, resource) => ask('needsMfa', user, resource) as Promise<boolean>,
    open: async (req) => {
      const r = (await ask('open', req)) as { ok: true; session: SessionView } | Extract<OpenOutcome, { ok: false }>;
      return r.ok ? { ok: true, session: new RemoteSession(r.session) } : r;
    },
    verifyTarget: (resource, identity) => ask('verifyTarget', resource, identity) as ReturnType<GatewayPort['verifyTarget']>,
    refused: (client, refusal, detail) => send({ t: 'refused', listener: spec.listener, client, refusal, detail }),
  };
}

/** Connections released since the last report, by listener: sent together, one message per loop turn. */
const released = new Map<number, number>();
function release(listener: number): void {
  if (!released.size) {
    setImmediate(() => {
      const counts = [...released];
      released.clear();
      send({ t: 'released', counts });
    });
  }
  released.set(listener, (released.get(listener) ?? 0) + 1);
}

interface Served {
  listener: Listener;
  onSocket: ((s: Socket) => void) | undefined;
  onDoorMessage: ((payload: unknown) => void) | undefined;
}

const served = new Map<number, Served>();
let log: Logger | undefined;

/** Counters a door keeps (its `stats`), reported to the primary as they change. */
function reportStats(adapter: ProtocolAdapter, listener: number): void {
  const own = (adapter as { stats?: Record<string, number> }).stats;
  if (!own || typeof own !== 'object') return;
  const counted = new Proxy(own, {
    set(target, key, value: number) {
      const before = target[key as string] ?? 0;
      target[key as string] = value;
      if (typeof key === 'string' && typeof value === 'number' && value !== before) send({ t: 'stats', listener, delta: { [key]: value - before } });
      return true;
    },
  });
  Object.defineProperty(adapter, 'stats', { value: counted });
}

async function listen(spec: ListenSpec, index: number, count: number, level: string): Promise<void> {
  log ??= createLogger({ level }).child({ worker: index });
  const entry = DOORS.find((d) => d.name === spec.door);
  if (!entry) throw new Error(`unknown door ${spec.door}`);
  const batch: unknown[] = [];
  const options = {
    ...spec.options,
    ...(spec.statements
      ? {
          // Statements travel to the primary in order, those of one loop turn in one message.
          onStatement: (e: unknown) => {
            if (!batch.length) setImmediate(() => send({ t: 'statements', listener: spec.listener, events: batch.splice(0) }));
            batch.push(e);
          },
        }
      : {}),
  };
  const adapter = await entry.load(options);
  reportStats(adapter, spec.listener);
  const s: Served = { listener: undefined as unknown as Listener, onSocket: undefined, onDoorMessage: undefined };
  served.set(spec.listener, s);
  const dataPath: DataPathWorker = {
    index,
    count,
    address: spec.address,
    accept: (fn) => {
      s.onSocket = fn;
      return { stop: () => (s.onSocket = undefined) };
    },
    send: (to, payload) => send({ t: 'door', listener: spec.listener, to, payload }),
    onMessage: (fn) => (s.onDoorMessage = fn),
    released: () => release(spec.listener),
  };
  const doorLog = log.child({ protocol: spec.protocol });
  const port = portFor(spec, doorLog);
  s.listener = await adapter.listen({ ...spec.config, broker: { portFor: () => port }, log: doorLog, dataPath });
}

function onMessage(m: ToWorker, handle: unknown): void {
  switch (m.t) {
    case 'listen':
      listen(m.spec, m.index, m.count, m.logLevel).then(
        () => send({ t: 'listening', listener: m.spec.listener }),
        (err: unknown) => {
          served.delete(m.spec.listener);
          send({ t: 'listening', listener: m.spec.listener, error: toWire(err) });
        },
      );
      return;
    case 'unlisten': {
      const s = served.get(m.listener);
      served.delete(m.listener);
      void s?.listener?.close();
      return;
    }
    case 'conn': {
      // The door's listener releases what it takes; a connection it never sees is released here.
      const socket = handle as Socket | undefined;
      const fn = served.get(m.listener)?.onSocket;
      if (socket && fn) return fn(socket);
      socket?.destroy();
      release(m.listener);
      return;
    }
    case 'reply': {
      const p = pending.get(m.call);
      pending.delete(m.call);
      if (!p) return;
      if (m.ok) p.resolve(m.value);
      else p.reject(fromWire(m.error));
      return;
    }
    case 'close': {
      // The counts as they stood when the broker closed (as for a session in its own process: a
      // handle whose counts live elsewhere, the native data path's, settles its close with them);
      // sent after the closes, so whatever the doors counted while closing (stats) arrives first.
      const closing = m.sessions.map(([id, reason, message]) => ({ id, reason, message, l: live.get(id) }));
      const settled: Promise<void>[] = [];
      for (const { id, reason, message, l } of closing) {
        if (!l) continue;
        l.session.closed();
        try {
          const done = l.handle.close(reason, message);
          if (done) settled.push(done.catch((err: unknown) => log?.warn({ err, session: id }, 'adapter close failed')));
        } catch (err) {
          log?.warn({ err, session: id }, 'adapter close failed');
        }
      }
      const report = (): void => {
        const counts = closing.map(({ id, l }): [string, number, number] => [id, l?.session.bytesIn ?? -1, l?.session.bytesOut ?? -1]);
        send({ t: 'closed', sessions: counts });
      };
      if (settled.length === 0) report();
      else void Promise.all(settled).then(report);
      return;
    }
    case 'warn':
      live.get(m.session)?.handle.warn(m.message);
      return;
    case 'door':
      served.get(m.listener)?.onDoorMessage?.(m.payload);
      return;
    case 'ping':
      send({ t: 'pong' });
      return;
    case 'stop':
      // The broker ended every session first: their goodbyes and the targets' Terminate
      // (protocols' linger timers) get a moment before the process goes.
      for (const s of served.values()) void s.listener?.close();
      setTimeout(() => process.exit(0), STOP_GRACE_MS);
      return;
    default: {
      const never: never = m;
      log?.warn({ message: never }, 'unknown message from the primary');
    }
  }
}

process.on('message', onMessage);
// The primary gone means nobody answers the port: every connection here ends with the process.
process.on('disconnect', () => process.exit(0));
// Ctrl-C in a terminal (and a service manager's stop) signals the whole process group: the
// primary ends the sessions (each client's goodbye, the record's reason `shutdown`) and then
// stops this process; dying on the signal would cut every connection here without a word.
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, () => undefined);

send({ t: 'ready' });
