/**
 * One client connection of the LDAP door: StartTLS (or LDAPS from the first byte), a simple
 * bind as USER:RESOURCE with a launch ticket or the gateway password, the decision, the
 * directory bound with the vaulted DN, and then the relay of every operation on that one
 * pinned connection with the message ids the client chose. The gateway decodes only what it
 * acts on (see codec.ts); each operation is checked (controls, read-only, base DN) and
 * audited on the session's record, then sent as the client sent it.
 */
import type { Socket } from 'node:net';
import { TLSSocket, type SecureContext } from 'node:tls';
import type { SessionHandle } from '../../src/broker/adapter.js';
import type { GatewayPort, GatewaySession, Refusal, SessionFacts } from '../../src/broker/port.js';
import { refusals } from '../../src/broker/refusals.js';
import { UpstreamError } from '../../src/broker/upstream-error.js';
import type { Resource, TerminationReason } from '../../src/core/model.js';
import type { DoorConnection } from '../shared/listener.js';
import {
  decodeAbandon, decodeBind, decodeEnvelope, decodeExtended, decodeRequestFacts, decodeResponseHead, extendedResponse, frameSize, LdapDecodeError,
  MAX_MESSAGE_ID, noticeOfDisconnection, Oid, Op, resultMessage, ResultCode, searchEntry, unbindRequest, withControls, withoutReferral, type Envelope,
  type RequestFacts,
} from './codec.js';
import { isWithin, parseDn, type Rdn } from './dn.js';
import { diagnostic, opRefusal, RESULT_CODE_OF, type OperationRefusal } from './errors.js';
import { connectDirectory, type LdapTarget, type LdapUpstream } from './upstream.js';

/** What the door may let a directory user do, from the resource's options. */
export interface DirectoryPolicy {
  readWrite: boolean;
  /** Every operation's DN must be at or below this one. */
  base?: { dn: string; rdns: readonly Rdn[] };
}

/** What every client connection of one listener shares. */
export interface LdapContext {
  port: GatewayPort;
  secureContext: SecureContext;
  /** LDAPS: TLS from the first byte. */
  implicitTls: boolean;
  /** Password binds without TLS (only on a loopback listener started so). */
  allowPlaintext: boolean;
  targetFor(resource: Resource): LdapTarget;
  policyFor(resource: Resource): DirectoryPolicy;
  /** Largest message before a successful bind, and after it. */
  caps: { anonymous: number; bound: number; upstream: number };
  stats: { upstreamConnects: number };
}

const Phase = {
  /** LDAPS: the TLS handshake runs before the first message. */
  tls: 'tls',
  /** Connected, not bound: rootDSE, StartTLS, Bind and Unbind only. */
  anonymous: 'anonymous',
  /** A live session: operations go to the directory. */
  bound: 'bound',
  closed: 'closed',
} as const;
type Phase = (typeof Phase)[keyof typeof Phase];

/** Response tag for each request tag: the gateway's own answer to a refused operation uses it. */
const RESPONSE_OF: Readonly<Record<number, number>> = {
  [Op.BindRequest]: Op.BindResponse,
  [Op.SearchRequest]: Op.SearchResultDone,
  [Op.ModifyRequest]: Op.ModifyResponse,
  [Op.AddRequest]: Op.AddResponse,
  [Op.DelRequest]: Op.DelResponse,
  [Op.ModifyDNRequest]: Op.ModifyDNResponse,
  [Op.CompareRequest]: Op.CompareResponse,
  [Op.ExtendedRequest]: Op.ExtendedResponse,
};

const WRITES: ReadonlySet<number> = new Set([Op.AddRequest, Op.ModifyRequest, Op.DelRequest, Op.ModifyDNRequest]);

/** Controls that are refused whatever their criticality: each changes who acts or what is reached. */
const REFUSED_CONTROLS: Readonly<Record<string, OperationRefusal>> = {
  [Oid.proxyAuthz]: opRefusal(ResultCode.authorizationDenied, 'proxied authorization (ProxyAuthz control) is not allowed: the directory session acts only as the vaulted account.'),
  [Oid.manageDsaIT]: opRefusal(ResultCode.unwillingToPerform, 'the ManageDsaIT control is not allowed through the gateway.'),
  [Oid.persistentSearch]: opRefusal(ResultCode.unwillingToPerform, 'persistent search is not allowed through the gateway.'),
  [Oid.syncRequest]: opRefusal(ResultCode.unwillingToPerform, 'content synchronization (syncrepl) is not allowed through the gateway.'),
};

/** Controls relayed as sent: they shape results, never who acts or where. */
const RELAYED_CONTROLS: ReadonlySet<string> = new Set([
  Oid.pagedResults,
  '1.2.840.113556.1.4.473', // server-side sort
  '2.16.840.1.113730.3.4.9', // virtual list view
  '1.3.6.1.1.12', // assertion
  '1.3.6.1.1.13.1', // pre-read
  '1.3.6.1.1.13.2', // post-read
  '1.2.826.0.1.3344810.2.3', // matched values
  '1.3.6.1.1.22', // don't use copy
  '1.2.840.113556.1.4.1413', // permissive modify
  '1.3.6.1.4.1.4203.1.10.1', // subentries
]);

/** Extended operations the gateway refuses; any other unknown one is refused as well. */
const REFUSED_EXTENDED: Readonly<Record<string, OperationRefusal>> = {
  [Oid.passwordModify]: opRefusal(ResultCode.insufficientAccessRights, "the password modify operation is not allowed: the vaulted credentials are not the user's to change."),
  [Oid.cancel]: opRefusal(ResultCode.unwillingToPerform, 'the cancel operation is not relayed; use Abandon.'),
};

const TLS_HINT = 'use StartTLS (ldapsearch -ZZ) or LDAPS (ldaps://GATEWAY:13636)';
const SIMPLE_HINT = 'use a simple bind: ldapsearch -x -ZZ -D USER:RESOURCE -W (-x turns SASL off)';
/** After a goodbye, how long the client has to read it before its socket is destroyed. */
const LINGER_MS = 200;

/** The broker's handle on one live session of this connection; a rebind retires it. */
class Handle implements SessionHandle {
  retired = false;
  constructor(private readonly conn: LdapConnection) {}
  warn(message: string): void {
    // LDAP has no in-band warning: the broker sends it through the user's live notices.
    this.conn.log.debug({ message }, 'LDAP session warning (sent through notices only)');
  }
  close(reason: TerminationReason, message: string): void {
    if (!this.retired) this.conn.teardown(reason, message);
  }
}

/** Consecutive identical operations fold into one audit entry with a count. */
type OpFacts = SessionFacts;

export class LdapConnection {
  private phase: Phase = Phase.anonymous;
  private stream: Socket | TLSSocket;
  private encrypted = false;
  private inBuf: Buffer = Buffer.alloc(0);
  private upBuf: Buffer = Buffer.alloc(0);
  /** An async step (bind, StartTLS) is running: client input waits. */
  private busy = false;
  private session: GatewaySession | undefined;
  private handle: Handle | undefined;
  private up: (LdapUpstream & { resource: string }) | undefined;
  private policy: DirectoryPolicy = { readWrite: false };
  private who: { user: string; resource: string } | undefined;
  /** The goodbye went out (or the client is gone): nothing more is written. */
  private said = false;

  constructor(
    private readonly conn: DoorConnection,
    private readonly ctx: LdapContext,
  ) {
    this.stream = conn.socket;
    conn.socket.setNoDelay(true);
    conn.onHandshakeTimeout(() => {
      ctx.port.refused(conn.client, refusals.handshakeTimeout(), `in the ${this.phase} step`);
      this.disconnect(ResultCode.unavailable, diagnostic(refusals.handshakeTimeout()));
    });
  }

  get log(): GatewayPort['log'] {
    return this.ctx.port.log;
  }

  async run(): Promise<void> {
    if (this.ctx.implicitTls) {
      this.phase = Phase.tls;
      if (!(await this.startTls())) return;
      this.phase = Phase.anonymous;
    }
    this.attachClient();
  }

  private attachClient(): void {
    this.stream.on('data', this.onClientData);
    this.stream.on('close', this.onClientClose);
    this.stream.on('drain', this.onClientDrain);
    this.stream.resume();
  }

  private readonly onClientData = (chunk: Buffer): void => {
    this.inBuf = this.inBuf.length === 0 ? chunk : Buffer.concat([this.inBuf, chunk]);
    if (this.session) this.session.bytesIn += chunk.length;
    this.pump();
  };

  private readonly onClientClose = (): void => {
    if (this.phase === Phase.closed) return;
    this.phase = Phase.closed;
    this.dropUpstream();
    this.endSession('client_closed', 'the client closed the connection');
  };

  /** The client read what was waiting for it: its requests and the directory's answers flow again. */
  private readonly onClientDrain = (): void => {
    if (this.phase === Phase.closed) return;
    this.up?.socket.resume();
    if (!this.busy) {
      this.stream.resume();
      this.pump();
    }
  };

  /**
   * Handles every complete message in the buffer, one at a time; an async step pauses the
   * rest. A client that does not read what it is sent is not read either: its requests wait
   * until the answers to the earlier ones have drained, so it cannot make the gateway queue
   * answers without bound (a flood of rootDSE searches before the bind, say).
   */
  private pump(): void {
    while (!this.busy && this.phase !== Phase.closed) {
      if (this.stream.writableNeedDrain) {
        this.stream.pause();
        return;
      }
      let frame: Buffer;
      let env: Envelope;
      try {
        const cap = this.phase === Phase.bound ? this.ctx.caps.bound : this.ctx.caps.anonymous;
        const size = frameSize(this.inBuf, cap);
        if (size === undefined) return;
        frame = this.inBuf.subarray(0, size);
        this.inBuf = this.inBuf.subarray(size);
        env = decodeEnvelope(frame);
      } catch (e) {
        return this.protocolViolation(e);
      }
      if (this.conn.overLimit) return this.refuseOverLimit(env);
      let step: Promise<void> | undefined;
      try {
        step = this.handle_(frame, env);
      } catch (e) {
        return this.protocolViolation(e);
      }
      if (step) {
        this.busy = true;
        this.stream.pause();
        step.then(
          () => {
            this.busy = false;
            if (this.phase === Phase.closed) return;
            this.stream.resume();
            this.pump();
          },
          (e: unknown) => this.protocolViolation(e),
        );
      }
    }
  }

  /** One request; a promise when it needs the broker or the network before the next one. */
  private handle_(frame: Buffer, env: Envelope): Promise<void> | undefined {
    switch (env.op) {
      case Op.BindRequest:
        return this.bind(frame, env);
      case Op.UnbindRequest:
        this.phase = Phase.closed;
        // The directory hears the client's own unbind (it abandons anything still running).
        this.dropUpstream(frame);
        this.endSession('client_closed', 'the client unbound');
        this.stream.end();
        return undefined;
      case Op.ExtendedRequest:
        return this.extended(frame, env);
      case Op.AbandonRequest:
        decodeAbandon(frame, env);
        // Nothing to abandon before a bind; afterwards the directory does it (no response either way).
        if (this.phase === Phase.bound) this.toDirectory(frame);
        return undefined;
      case Op.SearchRequest:
      case Op.CompareRequest:
      case Op.AddRequest:
      case Op.ModifyRequest:
      case Op.DelRequest:
      case Op.ModifyDNRequest:
        this.operation(frame, env);
        return undefined;
      default:
        throw new LdapDecodeError('LDAP_BAD_MESSAGE', `protocolOp 0x${env.op.toString(16)} is not a request`);
    }
  }

  // ------------------------------------------------------------------------------------
  // Bind

  private async bind(frame: Buffer, env: Envelope): Promise<void> {
    const req = decodeBind(frame, env);
    const client = this.conn.client;
    const port = this.ctx.port;
    const reply = (r: Refusal, targetSaid?: string): void => this.reply(resultMessage(env.id, Op.BindResponse, RESULT_CODE_OF[r.code], diagnostic(r, targetSaid)));
    const doorRefusal = (r: Refusal, why: string): void => {
      port.refused(client, r, why);
      reply(r);
    };
    // RFC 4511 4.2.1: a bind, even one that fails, leaves the connection unauthenticated first.
    this.retireSession('the client bound again');
    if (req.version !== 3) return doorRefusal(refusals.protocolError(`LDAP version ${req.version} is not supported; the gateway speaks LDAPv3`), `bind version ${req.version}`);
    if (req.kind !== 'simple') {
      const what = req.kind === 'sasl' ? `SASL (${req.mechanism.slice(0, 40)}) binds are not supported` : 'this bind method is not supported';
      return doorRefusal(refusals.unsupportedAuth(what, SIMPLE_HINT), req.kind === 'sasl' ? `SASL ${req.mechanism.slice(0, 40)}` : `auth tag 0x${req.tag.toString(16)}`);
    }
    if (req.name === '' && req.password === '') {
      return doorRefusal(refusals.notAllowed('an anonymous bind', 'bind as USER:RESOURCE: ldapsearch -x -ZZ -D alice:RESOURCE -W'), 'anonymous bind');
    }
    if (!this.encrypted && !this.ctx.allowPlaintext) return doorRefusal(refusals.tlsRequired(TLS_HINT), 'password bind without TLS');
    const critical = this.criticalControlRefusal(frame, env);
    if (critical) return this.reply(resultMessage(env.id, Op.BindResponse, critical.code, critical.message));

    const login = await port.login({ name: req.name, secret: { kind: 'password', value: req.password }, client });
    if (!login.ok) return reply(login.refusal);
    if (this.gone()) return;
    const opened = await port.open({ user: login.user, resource: login.resource, client, mfa: login.mfa });
    if (!opened.ok) return reply(opened.refusal);
    const session = opened.session;
    if (this.gone()) return session.end('client_closed', 'the client left before the directory was reached');

    const resource = session.resource;
    let policy: DirectoryPolicy;
    try {
      policy = this.ctx.policyFor(resource);
    } catch (e) {
      // A base DN that does not parse: validated on input, so only a record changed behind the API's back.
      this.log.error({ err: e, resource: resource.name }, 'the resource has an invalid directory policy');
      session.discard('internal_error', e instanceof Error ? e.message : String(e));
      return reply(refusals.internalError());
    }
    let facts: SessionFacts;
    try {
      facts = await this.reachDirectory(session);
    } catch (e) {
      if (!(e instanceof UpstreamError)) {
        session.discard('internal_error', e instanceof Error ? e.message : String(e));
        throw e;
      }
      session.discard(e.refusalCode, e.message);
      return reply(refusals.target(e.refusalCode, resource.name, e.message, e.hint), e.targetSaid?.message);
    }
    if (this.gone()) {
      session.end('client_closed', 'the client left before the session went live');
      return this.dropUpstream();
    }
    const handle = new Handle(this);
    this.session = session;
    this.handle = handle;
    this.who = { user: session.user, resource: resource.name };
    this.policy = policy;
    this.phase = Phase.bound;
    this.conn.established();
    try {
      await session.live(handle, facts);
    } catch (err) {
      this.log.error({ err, session: session.id }, 'could not record a live session');
      session.end('error', 'Gatehouse: the session could not be recorded; try again.');
      return;
    }
    if (this.phase !== Phase.bound || this.handle !== handle) return;
    this.reply(resultMessage(env.id, Op.BindResponse, ResultCode.success, ''));
  }

  /** The directory bound as the vaulted account: kept across rebinds to the same resource. */
  private async reachDirectory(session: GatewaySession): Promise<SessionFacts> {
    const resource = session.resource;
    if (this.up && this.up.resource === resource.name && !this.up.socket.destroyed) return { upstreamTls: this.up.encrypted, reused: true };
    this.dropUpstream();
    const creds = session.credentials;
    if (!creds?.login || creds.password === undefined) throw new UpstreamError('no_credentials', 'the resource has no vaulted bind DN and password');
    this.ctx.stats.upstreamConnects++;
    const up = await connectDirectory(this.ctx.targetFor(resource), { dn: creds.login, password: creds.password });
    if (this.phase === Phase.closed) {
      up.socket.destroy();
      return { upstreamTls: up.encrypted };
    }
    this.up = { ...up, resource: resource.name };
    this.upBuf = up.rest;
    up.socket.on('data', this.onUpstreamData);
    up.socket.on('drain', this.onUpstreamDrain);
    const sock = up.socket;
    sock.on('close', () => this.upstreamClosed(sock));
    sock.resume();
    if (this.upBuf.length) this.onUpstreamData(Buffer.alloc(0));
    return { upstreamTls: up.encrypted };
  }

  private gone(): boolean {
    return this.phase === Phase.closed || this.stream.destroyed;
  }

  /** A rebind: the current session ends without closing the connection. */
  private retireSession(why: string): void {
    if (this.handle) this.handle.retired = true;
    this.handle = undefined;
    this.endSession('client_closed', why);
    if (this.phase === Phase.bound) this.phase = Phase.anonymous;
    this.who = undefined;
  }

  private endSession(reason: TerminationReason, message: string): void {
    const s = this.session;
    this.session = undefined;
    s?.end(reason, message);
  }

  // ------------------------------------------------------------------------------------
  // Extended operations

  private extended(frame: Buffer, env: Envelope): Promise<void> | undefined {
    const ext = decodeExtended(frame, env);
    const refuse = (r: OperationRefusal): undefined => {
      this.recordRefusal({ op: 'extended', oid: ext.oid.slice(0, 64) }, r);
      this.reply(extendedResponse(env.id, r.code, r.message));
      return undefined;
    };
    switch (ext.oid) {
      case Oid.startTls:
        if (this.encrypted) return refuse(opRefusal(ResultCode.operationsError, 'TLS is already established on this connection.'));
        if (this.phase !== Phase.anonymous) return refuse(opRefusal(ResultCode.operationsError, 'StartTLS must come before the bind.'));
        // Bytes behind the request were sent before encryption: a man in the middle may have put them there.
        if (this.inBuf.length > 0 || this.stream.readableLength > 0) {
          this.ctx.port.refused(this.conn.client, refusals.protocolError('data after the StartTLS request'), 'pipelined StartTLS');
          this.disconnect(ResultCode.protocolError, 'Gatehouse: data was sent after the StartTLS request, before TLS; closing the connection (protocol_error).');
          return undefined;
        }
        this.reply(extendedResponse(env.id, ResultCode.success, '', Oid.startTls));
        return this.upgrade();
      case Oid.whoAmI:
        if (!this.who) return refuse(this.bindFirst());
        this.reply(extendedResponse(env.id, ResultCode.success, '', undefined, Buffer.from(`u:${this.who.user}`)));
        return undefined;
      default:
        if (!this.who) return refuse(this.bindFirst());
        return refuse(REFUSED_EXTENDED[ext.oid] ?? opRefusal(ResultCode.unwillingToPerform, `the extended operation ${ext.oid.slice(0, 64)} is not relayed by the gateway.`));
    }
  }

  /** StartTLS accepted: TLS over the client socket, then messages resume inside it. */
  private async upgrade(): Promise<void> {
    this.stream.off('data', this.onClientData);
    this.stream.off('close', this.onClientClose);
    this.stream.off('drain', this.onClientDrain);
    if (await this.startTls()) this.attachClient();
  }

  /** The TLS handshake on the client socket; false (and closed) if it fails. */
  private async startTls(): Promise<boolean> {
    const tls = new TLSSocket(this.conn.socket, { isServer: true, secureContext: this.ctx.secureContext });
    tls.on('error', () => {});
    this.stream = tls;
    const ok = await new Promise<boolean>((resolve) => {
      tls.once('secure', () => resolve(true));
      tls.once('error', () => resolve(false));
      tls.once('close', () => resolve(false));
    });
    if (!ok) {
      this.phase = Phase.closed;
      this.ctx.port.refused(this.conn.client, refusals.protocolError('TLS handshake failed'), 'client TLS handshake');
      this.conn.socket.destroy();
      return false;
    }
    this.encrypted = true;
    return true;
  }

  // ------------------------------------------------------------------------------------
  // Operations

  private bindFirst(): OperationRefusal {
    return opRefusal(ResultCode.operationsError, 'bind first as USER:RESOURCE with a launch ticket or your gateway password (ldapsearch -x -ZZ -D alice:RESOURCE -W).');
  }

  private operation(frame: Buffer, env: Envelope): void {
    const facts = decodeRequestFacts(frame, env)!;
    const responseOp = RESPONSE_OF[env.op]!;
    const refuse = (r: OperationRefusal): void => {
      this.recordRefusal(auditFacts(facts), r);
      this.reply(resultMessage(env.id, responseOp, r.code, r.message));
    };
    if (this.phase !== Phase.bound) {
      if (isRootDse(facts)) return this.answerRootDse(env.id);
      this.ctx.port.refused(this.conn.client, refusals.notAllowed(`a ${facts.op} before the bind`), `${facts.op} before bind`);
      return refuse(this.bindFirst());
    }
    const control = this.controlRefusal(frame, env);
    if (control && 'refusal' in control) return refuse(control.refusal);
    const denied = this.policyRefusal(env.op, facts);
    if (denied) return refuse(denied);
    this.record(auditFacts(facts));
    this.toDirectory(control?.frame ?? frame);
  }

  /** Controls: refused ones refuse the operation; unknown critical ones too; unknown others are dropped. */
  private controlRefusal(frame: Buffer, env: Envelope): { refusal: OperationRefusal } | { frame: Buffer } | undefined {
    if (env.controls.length === 0) return undefined;
    const keep = [];
    for (const c of env.controls) {
      const refused = REFUSED_CONTROLS[c.oid];
      if (refused) return { refusal: refused };
      if (RELAYED_CONTROLS.has(c.oid)) keep.push(c);
      else if (c.critical) return { refusal: opRefusal(ResultCode.unavailableCriticalExtension, `the critical control ${c.oid.slice(0, 64)} is not relayed by the gateway.`) };
    }
    return keep.length === env.controls.length ? undefined : { frame: withControls(frame, env, keep) };
  }

  /** For requests the gateway answers itself: a refused control, or a critical one it does not know. */
  private criticalControlRefusal(frame: Buffer, env: Envelope): OperationRefusal | undefined {
    const r = this.controlRefusal(frame, env);
    return r && 'refusal' in r ? r.refusal : undefined;
  }

  /** Read-only resources and the base DN. */
  private policyRefusal(op: number, f: RequestFacts): OperationRefusal | undefined {
    const resource = this.who!.resource;
    if (WRITES.has(op) && !this.policy.readWrite) {
      return opRefusal(ResultCode.insufficientAccessRights, `${resource} is read-only through the gateway: searches and compares only.`);
    }
    const base = this.policy.base;
    if (!base || isRootDse(f)) return undefined;
    const outside = (dn: string): OperationRefusal =>
      opRefusal(ResultCode.insufficientAccessRights, `${printableDn(dn)} is outside ${printableDn(base.dn)}, the part of the directory ${resource} reaches.`);
    if (!isWithin(f.dn, base.rdns)) return outside(f.dn);
    if (f.op === 'search' && f.deref !== 0) {
      return opRefusal(ResultCode.insufficientAccessRights, `alias dereferencing could leave ${printableDn(base.dn)}; search with dereferencing off (ldapsearch -a never).`);
    }
    if (f.op === 'modrdn') {
      // The entry's new place: under its new superior, or where it is now.
      const parent = f.newSuperior ?? parseDn(f.dn)?.slice(1);
      if (parent === undefined || !isWithin(parent, base.rdns)) return outside(f.newSuperior ?? f.dn);
    }
    return undefined;
  }

  private answerRootDse(id: number): void {
    this.reply(Buffer.concat([
      searchEntry(id, '', {
        objectClass: ['top'],
        supportedLDAPVersion: ['3'],
        supportedExtension: [Oid.startTls, Oid.whoAmI],
        supportedControl: [Oid.pagedResults],
        vendorName: ['Gatehouse'],
      }),
      resultMessage(id, Op.SearchResultDone, ResultCode.success, ''),
    ]));
  }

  private record(facts: OpFacts): void {
    this.session?.operation(facts);
  }

  private recordRefusal(facts: OpFacts, r: OperationRefusal): void {
    if (this.session) this.session.operation({ ...facts, refused: r.code });
  }

  // ------------------------------------------------------------------------------------
  // The relay

  private toDirectory(frame: Buffer): void {
    const up = this.up;
    if (!up || up.socket.destroyed) return;
    if (!up.socket.write(frame)) this.stream.pause();
  }

  private readonly onUpstreamDrain = (): void => {
    if (this.phase !== Phase.closed && !this.busy) this.stream.resume();
  };

  /**
   * Messages from the directory go to the client whole and in order; search references are
   * dropped and referrals cut out of results (the gateway never sends a client elsewhere);
   * a notice of disconnection from the directory ends the session.
   */
  private readonly onUpstreamData = (chunk: Buffer): void => {
    if (this.phase === Phase.closed) return;
    this.upBuf = this.upBuf.length === 0 ? chunk : Buffer.concat([this.upBuf, chunk]);
    const buf = this.upBuf;
    const out: Buffer[] = [];
    let pos = 0;
    let passFrom = 0;
    try {
      for (;;) {
        const rest = buf.subarray(pos);
        const size = frameSize(rest, this.ctx.caps.upstream);
        if (size === undefined) break;
        const frame = rest.subarray(0, size);
        const env = decodeEnvelope(frame, true);
        if (env.id === 0) {
          const head = decodeResponseHead(frame, env);
          if (pos > passFrom) out.push(buf.subarray(passFrom, pos));
          this.writeClient(out);
          return this.directoryLeft(`the directory ended the connection${head.diagnosticMessage ? `: ${head.diagnosticMessage.slice(0, 200)}` : ''}`);
        }
        let replacement: Buffer | null | undefined;
        if (env.op === Op.SearchResultReference) replacement = null;
        else if (env.op !== Op.SearchResultEntry) {
          const head = decodeResponseHead(frame, env);
          if (head.referral) replacement = withoutReferral(frame, env, head.referral);
        }
        if (replacement !== undefined) {
          if (pos > passFrom) out.push(buf.subarray(passFrom, pos));
          if (replacement) out.push(replacement);
          passFrom = pos + size;
        }
        pos += size;
      }
    } catch (e) {
      this.log.warn({ err: (e as Error).message, session: this.session?.id }, 'the directory broke the protocol; closing');
      return this.directoryLeft('the directory sent a malformed message');
    }
    if (pos > passFrom) out.push(buf.subarray(passFrom, pos));
    this.upBuf = buf.subarray(pos);
    if (this.session) this.session.bytesOut += pos;
    this.writeClient(out);
  };

  private writeClient(out: Buffer[]): void {
    if (out.length === 0 || this.stream.destroyed) return;
    const ok = this.stream.write(out.length === 1 ? out[0]! : Buffer.concat(out));
    if (!ok) this.up?.socket.pause();
  }

  private upstreamClosed(sock: Socket | TLSSocket): void {
    if (this.up?.socket !== sock || this.phase === Phase.closed) return;
    this.directoryLeft('the directory closed the connection');
  }

  /** The directory went away: the client hears it, and the session ends as the target's doing. */
  private directoryLeft(why: string): void {
    if (this.phase === Phase.closed) return;
    const resource = this.who?.resource;
    this.disconnect(ResultCode.unavailable, `Gatehouse: ${resource ? `${resource}: ` : ''}${why}; session closed.`);
    this.endSession('target_closed', why);
  }

  /** Lets go of the directory: with an Unbind when one is given (a polite end), else at once. */
  private dropUpstream(unbind?: Buffer): void {
    const up = this.up;
    this.up = undefined;
    this.upBuf = Buffer.alloc(0);
    if (!up) return;
    up.socket.off('data', this.onUpstreamData);
    if (!unbind || up.socket.destroyed) return void up.socket.destroy();
    up.socket.end(unbind);
    setTimeout(() => up.socket.destroy(), LINGER_MS).unref();
  }

  // ------------------------------------------------------------------------------------
  // Ending

  /** The broker ended the session: a notice of disconnection with the reason, then both sockets close. */
  teardown(_reason: TerminationReason, message: string): void {
    this.session = undefined;
    // The directory is told too, so it abandons whatever the session still had running.
    this.dropUpstream(unbindRequest(MAX_MESSAGE_ID));
    this.disconnect(ResultCode.unavailable, message);
  }

  /**
   * A connection over the listener's limit: its first request is answered `busy` (where it has
   * an answer), then a Notice of Disconnection says the same and the connection closes.
   */
  private refuseOverLimit(env: Envelope): void {
    const r = refusals.tooManyConnections();
    this.ctx.port.refused(this.conn.client, r, 'over maxConnections');
    const responseOp = RESPONSE_OF[env.op];
    if (responseOp !== undefined) this.reply(resultMessage(env.id, responseOp, RESULT_CODE_OF[r.code], diagnostic(r)));
    this.disconnect(RESULT_CODE_OF[r.code], diagnostic(r));
  }

  /** Notice of Disconnection, then close; nothing is written after it. */
  private disconnect(code: number, message: string): void {
    if (this.said) return;
    this.said = true;
    this.phase = Phase.closed;
    this.stream.off('data', this.onClientData);
    this.dropUpstream();
    const stream = this.stream;
    if (stream.destroyed) return;
    stream.end(noticeOfDisconnection(code, message));
    setTimeout(() => stream.destroy(), LINGER_MS).unref();
    // A TLS stream's end does not reach the raw socket if the client never reads.
    setTimeout(() => this.conn.socket.destroy(), LINGER_MS).unref();
  }

  private reply(message: Buffer): void {
    if (!this.stream.destroyed && this.phase !== Phase.closed) this.stream.write(message);
  }

  private protocolViolation(e: unknown): void {
    if (this.phase === Phase.closed) return;
    if (!(e instanceof LdapDecodeError)) {
      this.log.error({ err: e, client: this.conn.client }, 'LDAP connection failed');
      this.ctx.port.refused(this.conn.client, refusals.internalError(), e instanceof Error ? e.message : String(e));
      this.disconnect(ResultCode.other, diagnostic(refusals.internalError()));
      this.endSession('error', 'internal error');
      return;
    }
    const r = refusals.protocolError(e.message);
    this.ctx.port.refused(this.conn.client, r, `${e.code} in the ${this.phase} step`);
    this.disconnect(ResultCode.protocolError, diagnostic(r));
    this.endSession('error', `client protocol violation: ${e.message}`);
  }
}

function isRootDse(f: RequestFacts): boolean {
  return f.op === 'search' && f.dn === '' && f.scope === 'base';
}

/** A DN for a sentence: bounded, no control characters. */
function printableDn(dn: string): string {
  // eslint-disable-next-line no-control-regex
  const clean = dn.replace(/[\u0000-\u001f\u007f]/g, '?');
  return clean.length > 200 ? `'${clean.slice(0, 200)}...'` : `'${clean}'`;
}

/** What the audit keeps of an operation: no attribute values, no passwords. */
function auditFacts(f: RequestFacts): OpFacts {
  return {
    op: f.op,
    dn: f.dn.slice(0, 300),
    ...(f.scope !== undefined ? { scope: f.scope } : {}),
    ...(f.filter !== undefined ? { filter: f.filter.slice(0, 500) } : {}),
    ...(f.attributes ? { attributes: f.attributes.slice(0, 32).join(',').slice(0, 300) } : {}),
    ...(f.newSuperior !== undefined ? { newSuperior: f.newSuperior.slice(0, 300) } : {}),
    ...(f.newRdn !== undefined ? { newRdn: f.newRdn.slice(0, 200) } : {}),
  };
}
