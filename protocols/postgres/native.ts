/**
 * The door's native data path (native/pg-relay.c): the JavaScript half. The addon runs every
 * session's sockets on one thread of its own with the OpenSSL inside Node; JavaScript keeps
 * the login, the decision, refusals and the audit (session.ts), talking to the sockets through
 * `NativeEndpoint` streams, and hands each logged-in pair to the addon as a `NativeRelay`, the
 * session's handle. Where the addon cannot load, the door uses relay.ts on Node's streams.
 */
import type { SessionHandle } from '../../src/broker/adapter.js';
import type { GatewaySession } from '../../src/broker/port.js';
import { refusals } from '../../src/broker/refusals.js';
import type { TerminationReason } from '../../src/core/model.js';
import { AuditPace, Ev, How, START_FAILED, teardownForCounts, type Event, type NativeEndpoint, type NativeLoop, type TlsRecords } from '../shared/native.js';
import { terminate } from './codec.js';
import { refusalError, teardownError, warningNotice } from './errors.js';
import { auditStatement, type RelayDuties } from './relay.js';

export { ADDON, identityOf, loadNative, loopFor, nativeLoop, NativeEndpoint, NativeLoop, relayChoice, tlsRecordsChoice, type Handshake, type Loaded, type RelayChoice, type TlsRecords } from '../shared/native.js';

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
  private readonly pace: AuditPace;
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
    this.pace = new AuditPace(this.loop, this.id);
    this.session = o.session;
    this.legs = { client, upstream };
  }

  /**
   * Sends the greeting and joins the two legs; from here the addon moves the bytes. The addon
   * takes the relay before anything is handed over: should it refuse (a throw), the legs are
   * still the login's, and the session ends as one closed before its start does (the client
   * gets a FATAL, the target its Terminate), instead of leaving both sockets open and idle.
   */
  start(greeting: Buffer, clientRest: Buffer, upstreamRest: Buffer): void {
    if (this.finished || !this.legs) return;
    const audit = this.o.onStatement !== undefined || this.o.log.isLevelEnabled('debug');
    try {
      this.loop.addon.splice(this.id, this.targetId, greeting, clientRest, upstreamRest, this.o.auditLimit, audit, this.o.records === 'lean');
    } catch (err) {
      this.o.log.error({ err, session: this.session.id }, 'the native data path could not start the relay');
      this.session.end('error', START_FAILED);
      return;
    }
    // The splice is queued for the addon's thread; its events come in a later turn, to the
    // listener set here, after the login's streams have let go of the two ids.
    this.started = true;
    this.legs.client.handOver();
    this.legs.upstream.handOver();
    this.legs = undefined;
    this.loop.listen(this.id, this.onEvent);
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
    const { done, counted } = teardownForCounts(this.loop, this.id, goodbye);
    this.counted = counted;
    return done;
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
        this.pace.one();
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
    this.pace.stop();
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



