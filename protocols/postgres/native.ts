/**
 * The door's native data path (native/pg-relay.c): the JavaScript half. The addon runs every
 * session's sockets on one thread of its own with the OpenSSL inside Node; JavaScript keeps
 * the login, the decision, refusals and the audit (session.ts), talking to the sockets through
 * `NativeEndpoint` streams, and hands each logged-in pair to the addon as a `NativeRelay`, the
 * session's handle. Where the addon cannot load, the door uses relay.ts on Node's streams.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { Socket } from 'node:net';
import { Duplex } from 'node:stream';
import { fileURLToPath } from 'node:url';
import type { SessionHandle } from '../../src/broker/adapter.js';
import type { GatewaySession, TargetIdentity } from '../../src/broker/port.js';
import { refusals } from '../../src/broker/refusals.js';
import type { Logger } from '../../src/core/log.js';
import type { TerminationReason } from '../../src/core/model.js';
import { ValidationError } from '../../src/core/errors.js';
import { terminate } from './codec.js';
import { refusalError, teardownError, warningNotice } from './errors.js';
import { auditStatement, type RelayDuties } from './relay.js';

/** Which relay a PostgreSQL listener uses: `auto` is the native one where it loads. */
export type RelayChoice = 'auto' | 'native' | 'node';

/**
 * Who seals and opens a native relay's TLS records once the session is live: `lean` (the
 * default) frees OpenSSL's connection object after the login and keeps only each direction's
 * key, IV and record count (TLS 1.3 with an AEAD suite; other sessions stay with OpenSSL);
 * `openssl` keeps OpenSSL's for the whole session.
 */
export type TlsRecords = 'lean' | 'openssl';

const enum Ev { Ready = 1, Data, Closed, Stopped, Statement, Bytes, Broke, End, Counts }
const enum How { ClientClosed, TargetClosed, TargetBroke, Teardown, Violation }
const enum Role { Plain, Server, Client }

/** One event from the addon's thread: kind, id, three numbers, a Buffer (or a fourth number), a text. */
type Event = [number, number, number, number, number, Buffer | number, string | null];

interface Addon {
  init(onEvents: (batch: Event[]) => void): void;
  serverContext(certPem: string, keyPem: string, tls13: string, tls12: string): object;
  clientContext(caPem: string): object;
  open(fd: number, role: Role, context: object | null, host: string, pre: Buffer | null): number;
  write(id: number, data: Buffer): void;
  stop(id: number): void;
  end(id: number): void;
  close(id: number): void;
  splice(client: number, target: number, greeting: Buffer, clientRest: Buffer, targetRest: Buffer, limit: number, capture: boolean, lean: boolean): void;
  notice(id: number, message: Buffer): void;
  teardown(id: number, goodbye: Buffer, now: boolean): void;
  /** Login: this stream took what went up; the addon reads on (it stops at LOGIN_WINDOW until then). */
  ack(id: number): void;
  /** `count` statements of a relay were audited; the addon reads its client on (it stops at MAX_UNAUDITED). */
  audited(id: number, count: number): void;
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

  constructor(core: Core) {
    this.addon = core.addon;
    this.listeners = core.listeners;
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

  serverContext(tls: { certPem: string; keyPem: string; tls13: string; tls12: string }): object {
    return this.addon.serverContext(tls.certPem, tls.keyPem, tls.tls13, tls.tls12);
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

  /** A target socket after its 'S': the addon runs the handshake, checking `host` against `ca`. */
  connectTls(socket: Socket, host: string, ca: string | undefined): NativeEndpoint {
    return new NativeEndpoint(this, socket, Role.Client, this.clientContext(ca), host, null, false);
  }

  /** A plaintext target socket (a resource that allows one). */
  plain(socket: Socket): NativeEndpoint {
    return new NativeEndpoint(this, socket, Role.Plain, null, '', null, false);
  }
}

/** What a TLS handshake showed: for a target, whether its chain and name verified, and its fingerprint. */
export interface Handshake {
  authorized: boolean;
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
  /** Data came up since the addon was last told this stream wants more. */
  private unacked = false;

  constructor(
    private readonly loop: NativeLoop,
    private readonly placeholder: Socket,
    role: Role,
    context: object | null,
    host: string,
    pre: Buffer | null,
    keepPlaceholder: boolean,
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
    this.id = loop.addon.open(fd, role, context, host, pre);
    if (!keepPlaceholder) placeholder.destroy();
    else placeholder.once('close', this.onPlaceholderClose);
    loop.listen(this.id, this.onEvent);
    this.ready = role === Role.Plain
      ? Promise.resolve({ authorized: false, error: undefined, fingerprint256: undefined })
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
          error: e[6] ?? undefined,
          fingerprint256: Buffer.isBuffer(fp) ? fp.toString('hex').toUpperCase().replace(/(..)(?!$)/g, '$1:') : undefined,
        });
        this.settle = this.reject = undefined;
        return;
      }
      case Ev.Data:
        this.unacked = true;
        this.push(e[5] as Buffer);
        return;
      case Ev.Stopped:
        this.stopped?.();
        return;
      case Ev.Closed:
        this.reject?.(new Error(e[6] ?? 'connection closed'));
        this.settle = this.reject = undefined;
        this.stopped?.();
        this.push(null);
        this.destroy();
        return;
    }
  };

  override _read(): void {
    // The addon pushes what it reads up to a window, then waits for this: a reader that stops
    // taking (StreamReader past its cap, a login step awaiting the broker or the target, a
    // refusal's linger) stops reading the socket, as a paused TLSSocket does.
    if (!this.unacked) return;
    this.unacked = false;
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
      this.loop.addon.close(this.id);
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

/** How long a close waits for the addon's counts before the broker records what it has. */
const COUNTS_WAIT_MS = 1_000;
/** A close before the relay started: how long the client has to read its goodbye. */
const LINGER_MS = 100;

/**
 * A live session on the native data path, and its SessionHandle: relay.ts's duties, done by
 * the addon's thread (see native/pg-relay.c), with their results coming back as events.
 */
export class NativeRelay implements SessionHandle {
  private readonly loop: NativeLoop;
  private readonly id: number;
  private readonly targetId: number;
  private readonly session: GatewaySession;
  private started = false;
  private closing = false;
  private finished = false;
  /** Statements audited since the addon was last told (it reads the client only as fast as that). */
  private audited = 0;
  private readonly sayAudited = (): void => {
    const n = this.audited;
    this.audited = 0;
    if (!this.finished) this.loop.addon.audited(this.id, n);
  };
  private readonly early: Buffer[] = [];
  private counted: (() => void) | undefined;
  /** The login's streams, until the relay starts (a close before then uses them). */
  private legs: { client: NativeEndpoint; upstream: NativeEndpoint } | undefined;

  /**
   * `release` ends the listener's count of the client's connection (`DoorConnection.keep()`):
   * Node's socket goes at start(), and the count lasts until the relay ends.
   */
  constructor(
    private readonly o: RelayDuties & { loop: NativeLoop; release: () => void; records: TlsRecords },
    client: NativeEndpoint,
    upstream: NativeEndpoint,
  ) {
    this.loop = o.loop;
    this.id = client.id;
    this.targetId = upstream.id;
    this.session = o.session;
    this.legs = { client, upstream };
  }

  /** Sends the greeting and joins the two legs; from here the addon moves the bytes. */
  start(greeting: Buffer, clientRest: Buffer, upstreamRest: Buffer): void {
    if (this.finished || !this.legs) return;
    this.started = true;
    this.legs.client.handOver();
    this.legs.upstream.handOver();
    this.legs = undefined;
    this.loop.listen(this.id, this.onEvent);
    const audit = this.o.onStatement !== undefined || this.o.log.isLevelEnabled('debug');
    this.loop.addon.splice(this.id, this.targetId, greeting, clientRest, upstreamRest, this.o.auditLimit, audit, this.o.records === 'lean');
    for (const n of this.early.splice(0)) this.loop.addon.notice(this.id, n);
  }

  warn(message: string): void {
    if (this.finished || this.closing) return;
    const notice = warningNotice(message);
    if (this.started) this.loop.addon.notice(this.id, notice);
    else this.early.push(notice);
  }

  /** The broker's close: resolves once the addon has the teardown (the counts are then final). */
  close(_reason: TerminationReason, message: string): void | Promise<void> {
    if (this.finished || this.closing) return;
    this.closing = true;
    const goodbye = teardownError(message);
    if (!this.started) return this.closeUnstarted(goodbye);
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.counted = undefined;
        resolve();
      }, COUNTS_WAIT_MS);
      timer.unref();
      this.counted = () => {
        clearTimeout(timer);
        this.counted = undefined;
        resolve();
      };
      this.loop.addon.teardown(this.id, goodbye, false);
    });
  }

  /** Closed before the relay started: the client gets the goodbye, the target its Terminate. */
  private closeUnstarted(goodbye: Buffer): void {
    this.finished = true;
    if (!this.legs) return;
    const { client, upstream } = this.legs;
    this.legs = undefined;
    client.end(goodbye);
    upstream.end(terminate());
    setTimeout(() => {
      client.destroy();
      upstream.destroy();
      this.o.release();
    }, LINGER_MS).unref();
    this.o.onFinish(true, false);
  }

  private readonly onEvent = (e: Event): void => {
    const s = this.session;
    switch (e[0]) {
      case Ev.Statement:
        auditStatement(this.o, e[2], e[5] as Buffer, e[3]);
        // Told once per batch of events (the microtask runs after it), as relay.ts audits in line.
        if (this.audited++ === 0) queueMicrotask(this.sayAudited);
        return;
      case Ev.Bytes:
        s.bytesIn = e[3];
        s.bytesOut = e[4];
        return;
      case Ev.Counts:
        s.bytesIn = e[3];
        s.bytesOut = e[4];
        this.counted?.();
        return;
      case Ev.Broke: {
        const why = e[6] ?? 'invalid message';
        this.o.log.warn({ session: s.id, err: why }, 'client broke the protocol; closing');
        // Closing first: the broker's close that the end brings is then a no-op. The end goes
        // before the goodbye, so the session is over on record when the client reads it.
        this.closing = true;
        s.end('error', `client protocol violation: ${why}`);
        this.loop.addon.teardown(this.id, refusalError(refusals.protocolError(why)), true);
        return;
      }
      case Ev.End:
        return this.ended(e[2] as How, e[3], e[4], e[5] === 1, e[6]);
    }
  };

  private ended(how: How, bytesIn: number, bytesOut: number, targetBusy: boolean, why: string | null): void {
    if (this.finished) return;
    this.finished = true;
    const s = this.session;
    s.bytesIn = bytesIn;
    s.bytesOut = bytesOut;
    this.loop.forget(this.id);
    this.o.release();
    this.counted?.();
    this.o.onFinish(how === How.Teardown, targetBusy);
    switch (how) {
      case How.ClientClosed:
        // With a reason: the lean record layer failed the client's TLS (a bad record, an alert).
        return why ? s.end('error', `client TLS: ${why}`) : s.end('client_closed');
      case How.TargetClosed:
        return why ? s.end('error', `target TLS: ${why}`) : s.end('target_closed');
      case How.TargetBroke:
        this.o.log.warn({ session: s.id, err: why }, 'target broke the protocol; closing');
        return s.end('error', `target protocol violation: ${why ?? 'invalid message'}`);
      case How.Teardown:
      case How.Violation:
        return;
    }
  }
}

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

/** The listener's choice: its option, else GATEHOUSE_POSTGRES_RELAY, else `auto`. */
export function relayChoice(option: RelayChoice | undefined): RelayChoice {
  const v = option ?? process.env.GATEHOUSE_POSTGRES_RELAY ?? 'auto';
  if (v !== 'auto' && v !== 'native' && v !== 'node') throw new ValidationError('relay', `must be auto, native or node, not ${v}`);
  return v;
}

/** The listener's choice: its option, else GATEHOUSE_POSTGRES_TLS_RECORDS, else `lean`. */
export function tlsRecordsChoice(option: TlsRecords | undefined): TlsRecords {
  const v = option ?? process.env.GATEHOUSE_POSTGRES_TLS_RECORDS ?? 'lean';
  if (v !== 'lean' && v !== 'openssl') throw new ValidationError('tlsRecords', `must be lean or openssl, not ${v}`);
  return v;
}

/** The loop a listener uses, or undefined for relay.ts; `native` fails where the addon cannot load. */
export function loopFor(choice: RelayChoice, log: Logger, load: () => Loaded = nativeLoop): NativeLoop | undefined {
  if (choice === 'node') {
    log.info({ relay: 'node' }, 'postgres data path: Node streams (relay: node)');
    return undefined;
  }
  const r = load();
  if ('loop' in r) {
    log.info({ relay: 'native' }, 'postgres data path: native');
    return r.loop;
  }
  if (choice === 'native') throw new ValidationError('relay', `the native data path cannot load: ${r.reason}`);
  log.warn({ relay: 'node', reason: r.reason }, 'postgres data path: Node streams (the native one cannot load)');
  return undefined;
}

/** A target's identity as the policy (port.verifyTarget) takes it, from the addon's handshake. */
export function identityOf(h: Handshake, withCa: boolean): TargetIdentity | undefined {
  if (withCa) return { kind: 'ca', authorized: h.authorized, ...(h.error ? { error: h.error } : {}) };
  if (!h.fingerprint256) return undefined;
  return { kind: 'pin', what: 'TLS certificate', fingerprint: `tls-sha256:${h.fingerprint256}` };
}
