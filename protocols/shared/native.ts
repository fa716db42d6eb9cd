/**
 * The native data path's addon (native/pg-relay.c), as the doors that use it see it: one
 * thread per process that holds every session's sockets, with the OpenSSL inside Node. A door
 * hands it each socket as a `NativeEndpoint` (a stream for the login), then joins a logged-in
 * pair into a relay of its own (protocols/postgres/native.ts, protocols/mysql/native.ts).
 * Where the addon cannot load, the doors use their relays on Node's streams.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { Socket } from 'node:net';
import { Duplex } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { TICKET_KEY_BYTES } from '../../src/broker/adapter.js';
import type { TargetIdentity } from '../../src/broker/port.js';
import type { Logger } from '../../src/core/log.js';
import { ValidationError } from '../../src/core/errors.js';

/** Which relay a listener uses: `auto` is the native one where it loads. */
export type RelayChoice = 'auto' | 'native' | 'node';

/** The events' kinds (the first element of each), as the addon numbers them. */
export const Ev = { Ready: 1, Data: 2, Closed: 3, Stopped: 4, Statement: 5, Bytes: 6, Broke: 7, End: 8, Counts: 9, Held: 10, Session: 11 } as const;
/** How a relay ended (an End event's third element). */
export const How = { ClientClosed: 0, TargetClosed: 1, TargetBroke: 2, Teardown: 3, Violation: 4 } as const;
export type How = (typeof How)[keyof typeof How];
const Role = { Plain: 0, Server: 1, Client: 2 } as const;
type Role = (typeof Role)[keyof typeof Role];

/** One event from the addon's thread: kind, id, three numbers, a Buffer (or a fourth number), a text. */
export type Event = [number, number, number, number, number, Buffer | number, string | null];

export interface Addon {
  /** Login: the bytes gone up and not acked at which the addon stops reading a socket (LOGIN_WINDOW). */
  readonly loginWindow: number;
  init(onEvents: (batch: Event[]) => void): void;
  serverContext(certPem: string, keyPem: string, tls13: string, tls12: string, tickets: number, ticketKey: Buffer | null): object;
  clientContext(caPem: string): object;
  open(fd: number, role: Role, context: object | null, host: string, pre: Buffer | null, ahead: Buffer | null, session: Buffer | null): number;
  write(id: number, data: Buffer): void;
  stop(id: number): void;
  end(id: number): void;
  close(id: number): void;
  /** `mysql`: [maxPacket, deprecateEof, cacheMetadata, killHeadLimit] for a MySQL relay; absent, PostgreSQL. */
  splice(client: number, target: number, greeting: Buffer, clientRest: Buffer, targetRest: Buffer, limit: number, capture: boolean, lean: boolean, mysql?: number[]): void;
  notice(id: number, message: Buffer): void;
  teardown(id: number, goodbye: Buffer, now: boolean): void;
  /** Login: this stream took what went up (at least half the window); the addon reads on (it stops at `loginWindow` until then). */
  ack(id: number): void;
  /** `count` statements of a relay were audited; the addon reads its client on (it stops at MAX_UNAUDITED). */
  audited(id: number, count: number): void;
  /** A held MySQL command: send `bytes` to the target, or (`answer`) answer the client with them. */
  verdict(id: number, bytes: Buffer, answer: boolean): void;
  stats(): { endpoints: number; lean: number; aeadKeyings: number };
}

type Listener = (e: Event) => void;

/** The addon with its thread started, and who hears each id's events: one per process. */
interface Core {
  addon: Addon;
  listeners: Map<number, Listener>;
}

function startCore(addon: Addon): Core {
  const listeners = new Map<number, Listener>();
  addon.init((batch) => {
    for (const e of batch) listeners.get(e[1])?.(e);
  });
  return { addon, listeners };
}

/** The addon of this process, as this module's classes use it. */
export class NativeLoop {
  readonly addon: Addon;
  private readonly listeners: Map<number, Listener>;
  private readonly clientContexts = new Map<string, object>();

  /** A login stream acks in steps of this: half the addon's window (NativeEndpoint._read). */
  readonly ackEvery: number;

  constructor(core: Core) {
    this.addon = core.addon;
    this.listeners = core.listeners;
    this.ackEvery = core.addon.loginWindow / 2;
  }

  listen(id: number, fn: Listener): void {
    this.listeners.set(id, fn);
  }

  forget(id: number): void {
    this.listeners.delete(id);
  }

  /** Sockets the addon holds (client and target legs, lingering ones included). */
  get endpoints(): number {
    return this.addon.stats().endpoints;
  }

  /** Those of them whose TLS records the lean record layer seals and opens. */
  get leanEndpoints(): number {
    return this.addon.stats().lean;
  }

  /** How many times a lean direction had one of the loop's AEAD contexts keyed for it. */
  get aeadKeyings(): number {
    return this.addon.stats().aeadKeyings;
  }

  /**
   * A door's TLS server context. `tickets`: the session tickets a full handshake ends with, for
   * clients that resume (0, the default: none, and no resumption); sealed with `ticketKey`
   * (ListenerConfig `tls.ticketKey`, base64), or else a random key of this context's own.
   */
  serverContext(tls: { certPem: string; keyPem: string; tls13: string; tls12: string; tickets?: number; ticketKey?: string }): object {
    const key = tls.ticketKey === undefined ? null : Buffer.from(tls.ticketKey, 'base64');
    if (key && key.length !== TICKET_KEY_BYTES) throw new ValidationError('tls.ticketKey', `must be ${TICKET_KEY_BYTES} bytes, not ${key.length}`);
    return this.addon.serverContext(tls.certPem, tls.keyPem, tls.tls13, tls.tls12, tls.tickets ?? 0, key);
  }

  /** One context per CA bundle ('' for a pinned target), as upstream-tls.ts keeps for Node's. */
  clientContext(ca: string | undefined): object {
    const key = ca ?? '';
    let ctx = this.clientContexts.get(key);
    if (!ctx) {
      ctx = this.addon.clientContext(key);
      if (this.clientContexts.size > 64) this.clientContexts.clear();
      this.clientContexts.set(key, ctx);
    }
    return ctx;
  }

  /** The client's socket after its SSLRequest: the addon answers 'S' and runs the handshake. */
  acceptTls(socket: Socket, context: object): NativeEndpoint {
    return new NativeEndpoint(this, socket, Role.Server, context, '', Buffer.from('S'), true);
  }

  /**
   * A MySQL client's socket after its SSLRequest, which has no answer: the addon runs the
   * handshake, reading first the bytes Node had read past the SSLRequest (`ahead`, often the
   * client's hello).
   */
  acceptTlsAfter(socket: Socket, context: object, ahead: Buffer): NativeEndpoint {
    return new NativeEndpoint(this, socket, Role.Server, context, '', null, true, ahead);
  }

  /**
   * A target socket after its 'S' (PostgreSQL) or SSLRequest (MySQL): the addon runs the
   * handshake, checking `host` against `ca`, offering `session` (serialized as Node's) to resume;
   * the endpoint emits `session` with each the target gives.
   */
  connectTls(socket: Socket, host: string, ca: string | undefined, session?: Buffer): NativeEndpoint {
    return new NativeEndpoint(this, socket, Role.Client, this.clientContext(ca), host, null, false, null, session ?? null);
  }

  /** A plaintext target socket (a resource that allows one). */
  plain(socket: Socket): NativeEndpoint {
    return new NativeEndpoint(this, socket, Role.Plain, null, '', null, false);
  }
}

/** What a TLS handshake showed: for a target, whether its chain and name verified, and its fingerprint. */
export interface Handshake {
  authorized: boolean;
  /** A target's: the session offered was resumed (no certificate was sent; `authorized` and the fingerprint are the session's). */
  resumed: boolean;
  error: string | undefined;
  fingerprint256: string | undefined;
}

/**
 * One socket held by the addon, as a stream for the login. The Node socket it was copied from
 * stops reading; a client's stays open beside it (the listener counts it and times the
 * handshake with it) and closes with it; a target's closes at once.
 */
export class NativeEndpoint extends Duplex {
  readonly id: number;
  /** Settles when the TLS handshake is done (at once for a plaintext socket). */
  readonly ready: Promise<Handshake>;
  private settle: ((h: Handshake) => void) | undefined;
  private reject: ((e: Error) => void) | undefined;
  private stopped: (() => void) | undefined;
  /** Handed to a relay: its events and its end are the relay's. */
  private spliced = false;
  /** Bytes come up since the addon was last told this stream wants more. */
  private unacked = 0;
  /** The addon closed it (a Closed event) and freed it: nothing to tell it at the close. */
  private freed = false;

  constructor(
    private readonly loop: NativeLoop,
    private readonly placeholder: Socket,
    role: Role,
    context: object | null,
    host: string,
    pre: Buffer | null,
    keepPlaceholder: boolean,
    ahead: Buffer | null = null,
    session: Buffer | null = null,
  ) {
    super({ allowHalfOpen: false });
    // Node's own reading stops at once and for good (a paused stream still reads ahead):
    // from here every byte is the addon's. Nothing can have been read in between, since the
    // caller checked that nothing was buffered in the same turn of the event loop.
    placeholder.pause();
    const handle = (placeholder as unknown as { _handle?: { fd?: number; reading?: boolean; readStop?: () => number } })._handle;
    const fd = handle?.fd;
    if (!handle || typeof fd !== 'number' || fd < 0) throw new Error('the socket has no descriptor to hand to the native data path');
    handle.reading = false;
    handle.readStop?.();
    // The stream would start it again by itself (Readable's read-ahead after a 'data' event).
    placeholder._read = () => undefined;
    this.id = loop.addon.open(fd, role, context, host, pre, ahead, session);
    if (!keepPlaceholder) placeholder.destroy();
    else placeholder.once('close', this.onPlaceholderClose);
    loop.listen(this.id, this.onEvent);
    this.ready = role === Role.Plain
      ? Promise.resolve({ authorized: false, resumed: false, error: undefined, fingerprint256: undefined })
      : new Promise((resolve, reject) => {
        this.settle = resolve;
        this.reject = reject;
      });
    this.ready.catch(() => undefined);
  }

  private readonly onPlaceholderClose = (): void => void this.destroy();

  private readonly onEvent = (e: Event): void => {
    switch (e[0]) {
      case Ev.Ready: {
        const fp = e[5];
        this.settle?.({
          authorized: e[2] === 1,
          resumed: e[3] === 1,
          error: e[6] ?? undefined,
          fingerprint256: Buffer.isBuffer(fp) ? fp.toString('hex').toUpperCase().replace(/(..)(?!$)/g, '$1:') : undefined,
        });
        this.settle = this.reject = undefined;
        return;
      }
      case Ev.Data:
        this.unacked += (e[5] as Buffer).length;
        this.push(e[5] as Buffer);
        return;
      case Ev.Session:
        this.emit('session', e[5]);
        return;
      case Ev.Stopped:
        this.stopped?.();
        return;
      case Ev.Closed:
        this.freed = true;
        this.reject?.(new Error(e[6] ?? 'connection closed'));
        this.settle = this.reject = undefined;
        this.stopped?.();
        this.push(null);
        this.destroy();
        return;
    }
  };

  override _read(): void {
    // The addon pushes what it reads up to its window, then waits for this: a reader that stops
    // taking (a StreamReader past its cap, a stream paused before its reader comes or at a
    // refusal) stops reading the socket, as a paused TLSSocket does. Told only once half the
    // window came up: acking each of a login's few small messages would wake the addon's
    // thread for nothing. The addon stops only with a full window counted since its last ack;
    // every byte of it is counted here too, after this side's reset for that ack (it was sent
    // after the addon took it), so by the time its last Data event has come this count is past
    // the half, and the next read acks. (A step larger than the window would hang a login.)
    if (this.unacked < this.loop.ackEvery) return;
    this.unacked = 0;
    this.loop.addon.ack(this.id);
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (e?: Error | null) => void): void {
    this.loop.addon.write(this.id, chunk);
    cb();
  }

  override _final(cb: (e?: Error | null) => void): void {
    this.loop.addon.end(this.id);
    cb();
  }

  override _destroy(err: Error | null, cb: (e?: Error | null) => void): void {
    if (!this.spliced) {
      // An id the addon no longer holds would go to its thread as a command and wake it for nothing.
      if (!this.freed) this.loop.addon.close(this.id);
      this.loop.forget(this.id);
      this.placeholder.destroy();
    }
    this.reject?.(err ?? new Error('closed'));
    this.stopped?.();
    cb(err);
  }

  /** Stops reading; resolves with every byte read and not yet consumed, once the addon has stopped. */
  stop(): Promise<Buffer> {
    this.pause();
    return new Promise((resolve) => {
      this.stopped = () => {
        this.stopped = undefined;
        const parts: Buffer[] = [];
        for (let b: Buffer | null; (b = this.read() as Buffer | null) !== null; ) parts.push(b);
        resolve(Buffer.concat(parts));
      };
      if (this.destroyed) this.stopped();
      else this.loop.addon.stop(this.id);
    });
  }

  /**
   * For NativeRelay: this endpoint is the relay's from now on. Node's socket goes (the addon
   * has its own copy of the descriptor): an idle session does not keep a Node socket, its
   * handle and a third descriptor.
   */
  handOver(): void {
    this.spliced = true;
    this.loop.forget(this.id);
    this.placeholder.off('close', this.onPlaceholderClose);
    this.placeholder.destroy();
  }
}


/** What the client is told when the addon would not take its session's relay (a door's start() caught the throw). */
export const START_FAILED = 'Gatehouse: the session could not start; try again.';

/** Where `npm run build` puts the addon: native/build/ beside the sources, dist/native/build/ in the package. */
export const ADDON = fileURLToPath(new URL('../../native/build/pg-relay.node', import.meta.url));

export type Loaded = { loop: NativeLoop } | { reason: string };

/** Loads the addon at `path` and starts its thread, or says why not. */
function loadCore(path: string): Core | { reason: string } {
  try {
    if (!existsSync(path)) throw new Error(`${path} is not built (npm run build compiles it with cc)`);
    const built = JSON.parse(readFileSync(path.replace(/\.node$/, '.json'), 'utf8')) as { openssl?: string };
    const major = (v: string | undefined): string | undefined => v?.split('.')[0];
    if (major(built.openssl) !== major(process.versions.openssl)) {
      throw new Error(`built against OpenSSL ${built.openssl ?? '?'}, and this Node has ${process.versions.openssl}`);
    }
    return startCore(createRequire(import.meta.url)(path) as Addon);
  } catch (e) {
    return { reason: e instanceof Error ? e.message : String(e) };
  }
}

/**
 * The addon at `path`, or why not: not built, built against another OpenSSL than this Node's
 * (its symbols come from the node binary), or its thread already serving another JavaScript
 * thread of this process.
 */
export function loadNative(path: string): Loaded {
  const core = loadCore(path);
  return 'reason' in core ? core : { loop: new NativeLoop(core) };
}

/**
 * The started addon is kept on the process, not the module: its thread has one event callback,
 * so another instance of this module (a bundler's copy, a test runner's fresh module graph)
 * shares it, with its own classes around it.
 */
const CORE = Symbol.for('gatehouse.postgres.nativeCore');
const processSlot = globalThis as unknown as { [CORE]?: Core | { reason: string } };
let loaded: Loaded | undefined;

/** The process's native loop (loaded once), or why there is none. */
export function nativeLoop(): Loaded {
  if (loaded) return loaded;
  const core = (processSlot[CORE] ??= loadCore(ADDON));
  return (loaded = 'reason' in core ? core : { loop: new NativeLoop(core) });
}

/**
 * Who seals and opens a native relay's TLS records once the session is live: `lean` (the
 * default) frees OpenSSL's connection object after the login and keeps only each direction's
 * key, IV and record count (TLS 1.3 with an AEAD suite; other sessions stay with OpenSSL);
 * `openssl` keeps OpenSSL's for the whole session.
 */
export type TlsRecords = 'lean' | 'openssl';

/**
 * Tells the addon how many of a relay's statements were audited, once per batch of events (a
 * microtask after it): the addon reads the relay's client only as fast as that, as the relays
 * on Node's streams, which audit in line, do. `stop()` once the relay has ended.
 */
export class AuditPace {
  private audited = 0;
  private stopped = false;

  constructor(
    private readonly loop: NativeLoop,
    private readonly id: number,
  ) {}

  /** One statement went to the audit hook. */
  one(): void {
    if (this.audited++ === 0) queueMicrotask(this.say);
  }

  stop(): void {
    this.stopped = true;
  }

  private readonly say = (): void => {
    const n = this.audited;
    this.audited = 0;
    if (!this.stopped) this.loop.addon.audited(this.id, n);
  };
}

/** How long a relay's close waits for the addon's counts before the broker records what it has. */
const COUNTS_WAIT_MS = 1_000;

/**
 * A live relay's teardown for the broker's close (`goodbye`: what the door's relay says last):
 * `done` settles when `counted` is called (the addon's counts came up, or the relay ended) or
 * after COUNTS_WAIT_MS.
 */
export function teardownForCounts(loop: NativeLoop, id: number, goodbye: Buffer): { done: Promise<void>; counted: () => void } {
  let counted = (): void => undefined;
  const done = new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, COUNTS_WAIT_MS);
    timer.unref();
    counted = () => {
      clearTimeout(timer);
      resolve();
    };
  });
  loop.addon.teardown(id, goodbye, false);
  return { done, counted };
}

/** A door that can use the native data path. */
export type NativeDoor = 'postgres' | 'mysql';

/** The listener's choice: its option, else GATEHOUSE_POSTGRES_RELAY (GATEHOUSE_MYSQL_RELAY), else `auto`. */
export function relayChoice(option: RelayChoice | undefined, door: NativeDoor = 'postgres'): RelayChoice {
  const v = option ?? process.env[`GATEHOUSE_${door.toUpperCase()}_RELAY`] ?? 'auto';
  if (v !== 'auto' && v !== 'native' && v !== 'node') throw new ValidationError('relay', `must be auto, native or node, not ${v}`);
  return v;
}

/** The listener's choice: its option, else GATEHOUSE_POSTGRES_TLS_RECORDS (GATEHOUSE_MYSQL_TLS_RECORDS), else `lean`. */
export function tlsRecordsChoice(option: TlsRecords | undefined, door: NativeDoor = 'postgres'): TlsRecords {
  const v = option ?? process.env[`GATEHOUSE_${door.toUpperCase()}_TLS_RECORDS`] ?? 'lean';
  if (v !== 'lean' && v !== 'openssl') throw new ValidationError('tlsRecords', `must be lean or openssl, not ${v}`);
  return v;
}

/** The loop a listener uses, or undefined for the door's relay on Node's streams; `native` fails where the addon cannot load. */
export function loopFor(choice: RelayChoice, log: Logger, load: () => Loaded = nativeLoop, door: NativeDoor = 'postgres'): NativeLoop | undefined {
  if (choice === 'node') {
    log.info({ relay: 'node' }, `${door} data path: Node streams (relay: node)`);
    return undefined;
  }
  const r = load();
  if ('loop' in r) {
    log.info({ relay: 'native' }, `${door} data path: native`);
    return r.loop;
  }
  if (choice === 'native') throw new ValidationError('relay', `the native data path cannot load: ${r.reason}`);
  log.warn({ relay: 'node', reason: r.reason }, `${door} data path: Node streams (the native one cannot load)`);
  return undefined;
}

/** A target's identity as the policy (port.verifyTarget) takes it, from the addon's handshake. */
export function identityOf(h: Handshake, withCa: boolean): TargetIdentity | undefined {
  if (withCa) return { kind: 'ca', authorized: h.authorized, ...(h.error ? { error: h.error } : {}) };
  if (!h.fingerprint256) return undefined;
  return { kind: 'pin', what: 'TLS certificate', fingerprint: `tls-sha256:${h.fingerprint256}` };
}
