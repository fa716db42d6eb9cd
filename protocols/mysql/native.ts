/**
 * The MySQL door's native data path: a live session's relay on the addon's thread
 * (native/pg-relay.c, its MySQL framing), doing what session.ts's relay does on Node's
 * streams with relay.ts and response.ts: packets framed both ways, COM_QUERY and
 * COM_STMT_PREPARE captured for the audit, COM_CHANGE_USER and oversized packets refused,
 * every command that may be a KILL held for this side to map or refuse, the reply tracker
 * (COM_QUIT for an idle target at the end, a KILL from a second login for a busy one), byte
 * counts, backpressure, and the goodbye ERR between two server packets with the right
 * sequence id.
 */
import type { GatewaySession } from '../../src/broker/port.js';
import { Cmd, encodePacket, packetTooLarge } from './codec.js';
import { MysqlRefusal, protocolRefusal } from './errors.js';
import { KILL_HEAD_LIMIT, type KillRequest, type KillUnreadable } from './kill.js';
import { CHANGE_USER_REFUSED, judgeHeld, type KillVerdict, type StatementEvent } from './relay.js';
import { AuditPace, Ev, How, teardownForCounts, type Event, type NativeEndpoint, type NativeLoop, type TlsRecords } from '../shared/native.js';

/** What a refused command was, as the addon names it (EV_BROKE). */
const CHANGE_USER = 'change_user';

export interface MysqlNativeDuties {
  loop: NativeLoop;
  records: TlsRecords;
  session: GatewaySession;
  /** Ends the listener's count of the client's connection (DoorConnection.keep()). */
  release: () => void;
  maxPacket: number;
  auditLimit: number;
  onStatement: ((kind: StatementEvent['kind'], sql: string, truncated: boolean) => void) | undefined;
  onKill(kill: KillRequest | KillUnreadable): KillVerdict;
  /** COM_CHANGE_USER, or a packet over the limit: `refusal` is audited and the session ends; the client gets its ERR. */
  onRefused(refusal: MysqlRefusal): void;
  /**
   * The relay is over: `how` (shared/native.ts); for a teardown, what the target got: `quit`
   * (COM_QUIT), `busy` (cut off mid-reply: end its thread) or `cut` (cut off between packets
   * it had half received); and why a TLS leg failed.
   */
  onEnd(how: How, target: 'quit' | 'busy' | 'cut', why: string | null): void;
}

/** What the relay needs of the login (whose OK went out already): the reply shapes, and what each side sent behind it. */
export interface MysqlSplice {
  clientRest: Buffer;
  upstreamRest: Buffer;
  deprecateEof: boolean;
  cacheMetadata: boolean;
}

export class MysqlNativeRelay {
  private readonly id: number;
  private readonly targetId: number;
  private finished = false;
  private closing = false;
  private counted: (() => void) | undefined;
  private readonly pace: AuditPace;

  constructor(
    private readonly o: MysqlNativeDuties,
    private readonly client: NativeEndpoint,
    private readonly upstream: NativeEndpoint,
  ) {
    this.id = client.id;
    this.targetId = upstream.id;
    this.pace = new AuditPace(o.loop, this.id);
  }

  /**
   * Joins the two legs; from here the addon moves the bytes. The addon takes the relay before
   * anything is handed over: the error it throws when it refuses leaves both legs the login's
   * (the caller ends them and the session), not open and idle behind no relay.
   */
  start(s: MysqlSplice): void {
    const capture = this.o.onStatement !== undefined;
    const mysql = [this.o.maxPacket, s.deprecateEof ? 1 : 0, s.cacheMetadata ? 1 : 0, KILL_HEAD_LIMIT];
    this.o.loop.addon.splice(this.id, this.targetId, Buffer.alloc(0), s.clientRest, s.upstreamRest, this.o.auditLimit, capture, this.o.records === 'lean', mysql);
    // Queued for the addon's thread: its events come in a later turn, to the listener set here.
    this.client.handOver();
    this.upstream.handOver();
    this.o.loop.listen(this.id, this.onEvent);
  }

  /** The broker's close (an ERR payload; the addon frames it): resolves once the counts are final. */
  close(goodbye: Buffer): Promise<void> | void {
    if (this.finished || this.closing) return;
    this.closing = true;
    const { done, counted } = teardownForCounts(this.o.loop, this.id, goodbye);
    this.counted = counted;
    return done;
  }

  private readonly onEvent = (e: Event): void => {
    const s = this.o.session;
    switch (e[0]) {
      case Ev.Statement: {
        const kind = e[2] === Cmd.Query ? 'query' : 'prepare';
        this.o.onStatement?.(kind, (e[5] as Buffer).toString('utf8'), e[3] === 1);
        this.pace.one();
        return;
      }
      case Ev.Held:
        return this.judge(e[5] as Buffer, e[2] === 1, e[4]);
      case Ev.Bytes:
      case Ev.Counts:
        s.bytesIn = e[3];
        s.bytesOut = e[4];
        if (e[0] === Ev.Counts) this.counted?.();
        return;
      case Ev.Broke: {
        const refusal = e[6] === CHANGE_USER ? new MysqlRefusal(CHANGE_USER_REFUSED) : protocolRefusal(packetTooLarge(this.o.maxPacket));
        // Closing first: the broker's close that the refusal brings is then a no-op.
        this.closing = true;
        this.o.onRefused(refusal);
        this.o.loop.addon.teardown(this.id, refusal.packet(), true);
        return;
      }
      case Ev.End: {
        if (this.finished) return;
        this.finished = true;
        this.pace.stop();
        s.bytesIn = e[3];
        s.bytesOut = e[4];
        this.o.loop.forget(this.id);
        this.o.release();
        this.counted?.();
        this.o.onEnd(e[2] as How, e[5] === 0 ? 'quit' : e[5] === 1 ? 'busy' : 'cut', e[6]);
        return;
      }
    }
  };

  /** A held command (`raw`: its header and payload, or their first KILL_HEAD_LIMIT bytes): passed on, or the KILL mapped or refused. */
  private judge(raw: Buffer, complete: boolean, cmd: number): void {
    const verdict = judgeHeld(cmd, raw.subarray(4), complete);
    if (verdict === 'pass') return this.o.loop.addon.verdict(this.id, raw, false);
    const said = this.o.onKill(verdict);
    if ('forward' in said) this.o.loop.addon.verdict(this.id, encodePacket(0, said.forward), false);
    else this.o.loop.addon.verdict(this.id, said.answer, true);
  }
}
