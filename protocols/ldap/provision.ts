/**
 * Ephemeral entries and elevation on a directory (issue 17). The vaulted DN of the resource
 * is the administrator: reached and bound exactly as the door reaches the directory for a
 * session (connectDirectory: the same transport, TLS and pinned identity), it adds a
 * temporary entry under the configured OU with the Gatehouse marker in its description,
 * puts it in the configured groups, and removes it again; for elevation it puts itself in
 * the configured groups for the grant. Requests are built with the door's own BER pieces;
 * names and values travel as BER octet strings, never as filter or DN text to be parsed.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { JitError, type AccountOwner, type AccountSpec, type JitTarget, type Provisioner, type RemoveResult } from '../../src/broker/provisioner.js';
import { UpstreamError } from '../../src/broker/upstream-error.js';
import type { JitSettings, Resource, TargetCredentials } from '../../src/core/model.js';
import { Ber, decodeEnvelope, decodeResponseHead, frameSize, LdapDecodeError, message, Op, readTlv, tlv, unbindRequest, type Envelope, type Tlv } from './codec.js';
import { isWithin, parseDn } from './dn.js';
import { connectDirectory, type LdapTarget } from './upstream.js';

/** What every temporary entry's description starts with; nothing without it is ever removed. */
export const MARKER = 'gatehouse-ephemeral: ';
/** Names the manager makes: `[a-z0-9_]`; anything else never reaches a DN. */
const NAME = /^[a-z0-9_]{1,64}$/;
/** Bigger than any answer to the few small searches made here. */
const FRAME_CAP = 4 * 1024 * 1024;
const PASSWORD_LENGTH = 32;
const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
/** Assertion control (RFC 4528): the delete happens only if the entry still carries the marker. */
const ASSERTION_OID = '1.3.6.1.1.12';

/** RFC 4511 4.1.9 result codes this file acts on, and the names sentences use for every code. */
const Rc = {
  success: 0,
  sizeLimitExceeded: 4,
  noSuchAttribute: 16,
  attributeOrValueExists: 20,
  noSuchObject: 32,
  insufficientAccessRights: 50,
  objectClassViolation: 65,
  assertionFailed: 122,
  authorizationDenied: 123,
} as const;

const CODE_NAMES: Readonly<Record<number, string>> = {
  0: 'success', 1: 'operationsError', 2: 'protocolError', 3: 'timeLimitExceeded', 4: 'sizeLimitExceeded', 7: 'authMethodNotSupported',
  8: 'strongerAuthRequired', 10: 'referral', 11: 'adminLimitExceeded', 12: 'unavailableCriticalExtension', 13: 'confidentialityRequired',
  16: 'noSuchAttribute', 17: 'undefinedAttributeType', 18: 'inappropriateMatching', 19: 'constraintViolation', 20: 'attributeOrValueExists',
  21: 'invalidAttributeSyntax', 32: 'noSuchObject', 34: 'invalidDNSyntax', 48: 'inappropriateAuthentication', 49: 'invalidCredentials',
  50: 'insufficientAccessRights', 51: 'busy', 52: 'unavailable', 53: 'unwillingToPerform', 54: 'loopDetect', 64: 'namingViolation',
  65: 'objectClassViolation', 66: 'notAllowedOnNonLeaf', 67: 'notAllowedOnRDN', 68: 'entryAlreadyExists', 69: 'objectClassModsProhibited',
  80: 'other', 122: 'assertionFailed', 123: 'authorizationDenied',
};

interface Result {
  code: number;
  diagnostic: string;
}

/** `insufficientAccessRights: no write access to parent`, as sentences quote the directory. */
const said = (r: Result): string => `the directory said ${CODE_NAMES[r.code] ?? `result ${r.code}`}${r.diagnostic ? `: ${r.diagnostic}` : ''}`;
const denied = (r: Result): boolean => r.code === Rc.insufficientAccessRights || r.code === Rc.authorizationDenied;

// ---------------------------------------------------------------------------------------
// Requests (RFC 4511 4.5-4.8), from the codec's BER pieces

const octets = (tag: number, s: string): Buffer => tlv(tag, Buffer.from(s, 'utf8'));
const small = (tag: number, n: number): Buffer => tlv(tag, Buffer.from([n]));
const attribute = (type: string, values: readonly string[]): Buffer =>
  tlv(Ber.Sequence, octets(Ber.OctetString, type), tlv(Ber.Set, ...values.map((v) => octets(Ber.OctetString, v))));

/** Filters as BER: equality [3], substrings [4] with an initial part, present [7], and [0]. */
const Filter = {
  eq: (attr: string, value: string): Buffer => tlv(0xa3, octets(Ber.OctetString, attr), octets(Ber.OctetString, value)),
  startsWith: (attr: string, initial: string): Buffer => tlv(0xa4, octets(Ber.OctetString, attr), tlv(Ber.Sequence, octets(0x80, initial))),
  present: (attr: string): Buffer => octets(0x87, attr),
  and: (...filters: Buffer[]): Buffer => tlv(0xa0, ...filters),
  or: (...filters: Buffer[]): Buffer => tlv(0xa1, ...filters),
};

const MARKED = Filter.startsWith('description', MARKER.trimEnd());
/**
 * An entry `remove` may take away: it carries the marker, or the vaulted DN created it
 * (creatorsName, which the directory keeps and no entry can change). Many directories let
 * an entry write its own description: a temporary entry that dropped the marker must not
 * survive its grant. The reconciler still lists marked entries only.
 */
const ours = (admin: string): Buffer => Filter.or(MARKED, Filter.eq('creatorsName', admin));
/** Controls [0] with one critical assertion control: the operation only applies to an entry `filter` matches. */
const onlyIf = (filter: Buffer): Buffer =>
  tlv(0xa0, tlv(Ber.Sequence, octets(Ber.OctetString, ASSERTION_OID), tlv(Ber.Boolean, Buffer.from([0xff])), tlv(Ber.OctetString, filter)));
const onlyIfMarked = (): Buffer => onlyIf(MARKED);

const Scope = { base: 0, one: 1, sub: 2 } as const;
const ModOp = { add: 0, delete: 1 } as const;

interface Entry {
  dn: string;
  /** Attribute type, lowercased, to values. */
  attrs: Map<string, string[]>;
}

function expectTag(t: Tlv, tag: number, what: string): Tlv {
  if (t.tag !== tag) throw new LdapDecodeError('LDAP_BAD_MESSAGE', `${what}: expected tag 0x${tag.toString(16)}, got 0x${t.tag.toString(16)}`);
  return t;
}

function decodeEntry(frame: Buffer, env: Envelope): Entry {
  const op = env.opTlv;
  const name = expectTag(readTlv(frame, op.start, op.end), Ber.OctetString, 'entry name');
  const list = expectTag(readTlv(frame, name.end, op.end), Ber.Sequence, 'entry attributes');
  const attrs = new Map<string, string[]>();
  for (let pos = list.start; pos < list.end; ) {
    const a = expectTag(readTlv(frame, pos, list.end), Ber.Sequence, 'attribute');
    const type = expectTag(readTlv(frame, a.start, a.end), Ber.OctetString, 'attribute type');
    const set = expectTag(readTlv(frame, type.end, a.end), Ber.Set, 'attribute values');
    const values: string[] = [];
    for (let v = set.start; v < set.end; ) {
      const value = readTlv(frame, v, set.end);
      values.push(frame.toString('utf8', value.start, value.end));
      v = value.end;
    }
    attrs.set(frame.toString('utf8', type.start, type.end).toLowerCase(), values);
    pos = a.end;
  }
  return { dn: frame.toString('utf8', name.start, name.end), attrs };
}

interface Pending {
  resolve(r: { result: Result; entries: Entry[] }): void;
  reject(e: Error): void;
  entries: Entry[];
  timer: NodeJS.Timeout;
}

/**
 * One bound connection as the vaulted DN: requests go out with fresh message ids and each
 * answer (with a search's entries) comes back to its caller. Lost connection, notice of
 * disconnection, malformed answer or timeout fail every request in flight as `unreachable`.
 */
class AdminConnection {
  private buf: Buffer = Buffer.alloc(0);
  /** connectDirectory used 1 (StartTLS) and 2 (the bind). */
  private nextId = 3;
  private readonly pending = new Map<number, Pending>();
  private failure: JitError | undefined;

  private constructor(
    private readonly socket: Socket | TLSSocket,
    private readonly where: string,
    private readonly timeoutMs: number,
  ) {
    socket.on('data', this.onData);
    socket.on('close', () => this.fail(`the directory ${where} closed the connection`));
    socket.on('error', () => {});
  }

  static async open(target: LdapTarget, admin: TargetCredentials): Promise<AdminConnection> {
    if (!admin.login || admin.password === undefined) throw new JitError('invalid', `${target.resource} has no vaulted bind DN and password`);
    try {
      const up = await connectDirectory(target, { dn: admin.login, password: admin.password });
      const conn = new AdminConnection(up.socket, `${target.host}:${target.port}`, target.timeoutMs);
      up.socket.resume();
      if (up.rest.length) conn.onData(up.rest);
      return conn;
    } catch (e) {
      if (!(e instanceof UpstreamError)) throw e;
      throw new JitError(e.kind === 'login' ? 'refused' : 'unreachable', `${target.resource}: ${e.message}`);
    }
  }

  add(dn: string, attrs: Record<string, readonly string[]>): Promise<Result> {
    const list = Object.entries(attrs).map(([k, v]) => attribute(k, v));
    return this.send(tlv(Op.AddRequest, octets(Ber.OctetString, dn), tlv(Ber.Sequence, ...list)));
  }

  /** One change of one attribute; no values deletes the whole attribute. */
  modify(dn: string, op: number, type: string, values: readonly string[], controls?: Buffer): Promise<Result> {
    const change = tlv(Ber.Sequence, small(Ber.Enumerated, op), attribute(type, values));
    return this.send(tlv(Op.ModifyRequest, octets(Ber.OctetString, dn), tlv(Ber.Sequence, change)), controls);
  }

  delete(dn: string, controls?: Buffer): Promise<Result> {
    return this.send(octets(Op.DelRequest, dn), controls);
  }

  async search(base: string, scope: number, filter: Buffer, attrs: readonly string[]): Promise<{ result: Result; entries: Entry[] }> {
    const req = tlv(Op.SearchRequest, octets(Ber.OctetString, base), small(Ber.Enumerated, scope), small(Ber.Enumerated, 0),
      small(Ber.Integer, 0), small(Ber.Integer, 0), tlv(Ber.Boolean, Buffer.from([0])), filter,
      tlv(Ber.Sequence, ...attrs.map((a) => octets(Ber.OctetString, a))));
    return this.request(req);
  }

  /** An unbind, then the socket closes; nothing is waited for. */
  close(): void {
    this.failure ??= new JitError('unreachable', 'the connection to the directory was closed');
    if (this.socket.destroyed) return;
    this.socket.end(unbindRequest(this.nextId++));
    setTimeout(() => this.socket.destroy(), 1000).unref();
  }

  private async send(op: Buffer, controls?: Buffer): Promise<Result> {
    return (await this.request(op, controls)).result;
  }

  private request(op: Buffer, controls?: Buffer): Promise<{ result: Result; entries: Entry[] }> {
    if (this.failure) return Promise.reject(this.failure);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.fail(`the directory ${this.where} did not answer within ${this.timeoutMs} ms`);
        this.socket.destroy();
      }, this.timeoutMs);
      this.pending.set(id, { resolve, reject, entries: [], timer });
      this.socket.write(message(id, op, controls));
    });
  }

  private readonly onData = (chunk: Buffer): void => {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    try {
      for (;;) {
        const size = frameSize(this.buf, FRAME_CAP);
        if (size === undefined) return;
        const frame = this.buf.subarray(0, size);
        this.buf = this.buf.subarray(size);
        const env = decodeEnvelope(frame, true);
        if (env.id === 0) {
          const head = decodeResponseHead(frame, env);
          return this.fail(`the directory ${this.where} ended the connection${head.diagnosticMessage ? `: ${head.diagnosticMessage.slice(0, 200)}` : ''}`);
        }
        const p = this.pending.get(env.id);
        if (!p) continue;
        if (env.op === Op.SearchResultEntry) p.entries.push(decodeEntry(frame, env));
        else if (env.op !== Op.SearchResultReference && env.op !== Op.IntermediateResponse) {
          const head = decodeResponseHead(frame, env);
          clearTimeout(p.timer);
          this.pending.delete(env.id);
          p.resolve({ result: { code: head.resultCode ?? -1, diagnostic: (head.diagnosticMessage ?? '').slice(0, 300) }, entries: p.entries });
        }
      }
    } catch (e) {
      this.fail(`the directory ${this.where} sent a malformed message (${(e as Error).message})`);
      this.socket.destroy();
    }
  };

  private fail(why: string): void {
    this.failure ??= new JitError('unreachable', why);
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(this.failure);
    }
    this.pending.clear();
  }
}

// ---------------------------------------------------------------------------------------
// Passwords

/** Uniform over the alphabet: bytes past the last whole multiple of its length are skipped. */
function randomPassword(): string {
  const limit = 256 - (256 % ALPHABET.length);
  let out = '';
  while (out.length < PASSWORD_LENGTH) {
    for (const b of randomBytes(PASSWORD_LENGTH * 2)) {
      if (b < limit && out.length < PASSWORD_LENGTH) out += ALPHABET[b % ALPHABET.length];
    }
  }
  return out;
}

/**
 * `{SSHA}`: SHA-1 of password and salt, then the salt, base64 (what slappasswd makes). slapd
 * stores an added userPassword as sent, so the gateway hashes it: the clear password never
 * reaches the directory's database or its log.
 */
function ssha(password: string): string {
  const salt = randomBytes(8);
  const digest = createHash('sha1').update(password, 'utf8').update(salt).digest();
  return `{SSHA}${Buffer.concat([digest, salt]).toString('base64')}`;
}

// ---------------------------------------------------------------------------------------
// The provisioner

/** The owner line as a description value: one line, no control characters, bounded. */
function noteText(note: string): string {
  // eslint-disable-next-line no-control-regex
  const clean = note.replace(/[\u0000-\u001f\u007f]/g, ' ').trim();
  return `${MARKER}${clean.slice(0, 900) || 'unknown owner'}`;
}

export class LdapProvisioner implements Provisioner {
  readonly protocol = 'ldap' as const;
  /** uid has no length limit in the schema; 64 keeps the DN readable in logs and sentences. */
  readonly nameLimit = 64;

  constructor(private readonly targetFor: (r: Resource) => LdapTarget) {}

  check(jit: JitSettings): string[] {
    const problems: string[] = [];
    const dn = (field: string, value: string): void => {
      const rdns = parseDn(value);
      if (!rdns || rdns.length === 0) problems.push(`${field}: '${value}' is not a DN`);
    };
    if (jit.ephemeral) {
      if (jit.ephemeral.ou === undefined) problems.push('ephemeral.ou: name the OU temporary entries are made under (e.g. ou=gatehouse,dc=example,dc=com)');
      else dn('ephemeral.ou', jit.ephemeral.ou);
      jit.ephemeral.grants.forEach((g, i) => dn(`ephemeral.grants[${i}]`, g));
    }
    jit.elevate?.grants.forEach((g, i) => dn(`elevate.grants[${i}]`, g));
    return problems;
  }

  async create(t: JitTarget, spec: AccountSpec): Promise<TargetCredentials> {
    const { ou, grants } = ephemeral(t);
    const dn = entryDn(spec.name, ou);
    const password = randomPassword();
    const conn = await AdminConnection.open(this.targetFor(t.resource), t.admin);
    const admin = t.admin.login;
    const joined: string[] = [];
    try {
      const added = await conn.add(dn, {
        objectClass: ['inetOrgPerson'], uid: [spec.name], cn: [spec.name], sn: ['Gatehouse temporary account'],
        description: [noteText(spec.note)], userPassword: [ssha(password)],
      });
      if (added.code !== Rc.success) {
        if (denied(added)) throw new JitError('missing_right', `the vaulted DN ${admin} may not add entries under ${ou} on ${t.resource.name} (${said(added)})`);
        if (added.code === Rc.noSuchObject) throw new JitError('invalid', `${ou} does not exist on ${t.resource.name}, or the vaulted DN ${admin} may not see it (${said(added)})`);
        throw new JitError('refused', `${t.resource.name} refused to add ${dn} (${said(added)})`);
      }
      try {
        for (const group of grants) {
          const r = await conn.modify(group, ModOp.add, 'member', [dn]);
          if (r.code !== Rc.success && r.code !== Rc.attributeOrValueExists) throw groupRefusal(t, group, r, 'add');
          joined.push(group);
        }
      } catch (e) {
        await undo(conn, dn, joined);
        throw e;
      }
      return { login: dn, password };
    } finally {
      conn.close();
    }
  }

  async remove(t: JitTarget, name: string): Promise<RemoveResult> {
    const { ou, grants } = ephemeral(t);
    const dn = entryDn(name, ou);
    const conn = await AdminConnection.open(this.targetFor(t.resource), t.admin);
    try {
      const mine = t.admin.login ? ours(t.admin.login) : MARKED;
      const found = await conn.search(dn, Scope.base, mine, ['description']);
      if (found.result.code === Rc.noSuchObject) return { done: true, detail: `${dn} is not on ${t.resource.name}` };
      if (found.result.code !== Rc.success) return { done: false, detail: `could not read ${dn} on ${t.resource.name} (${said(found.result)})` };
      if (found.entries.length === 0) return { done: true, detail: `${dn} carries no Gatehouse marker: left alone` };

      // Locked first: with its password gone nobody can bind as it while the rest happens.
      const lock = await conn.modify(dn, ModOp.delete, 'userPassword', [], onlyIf(mine));
      if (lock.code === Rc.noSuchObject) return { done: true, detail: `${dn} is not on ${t.resource.name}` };
      if (lock.code === Rc.assertionFailed) return { done: true, detail: `${dn} lost its Gatehouse marker: left alone` };
      if (lock.code !== Rc.success && lock.code !== Rc.noSuchAttribute) {
        return { done: false, detail: denied(lock) ? `the vaulted DN ${t.admin.login} may not change the password of ${dn} (${said(lock)})` : `could not lock ${dn} (${said(lock)})` };
      }

      // Out of every group: the configured ones and any other that lists it, so no dangling member is left.
      const groups = new Set(grants);
      const base = await namingContext(conn, ou);
      if (base !== undefined) {
        const listing = await conn.search(base, Scope.sub, Filter.and(Filter.eq('objectClass', 'groupOfNames'), Filter.eq('member', dn)), ['1.1']);
        for (const g of listing.entries) groups.add(g.dn);
      }
      const left: string[] = [];
      for (const group of groups) {
        const r = await conn.modify(group, ModOp.delete, 'member', [dn]);
        if (r.code === Rc.success || r.code === Rc.noSuchAttribute || r.code === Rc.noSuchObject) continue;
        left.push(groupRefusal(t, group, r, 'remove').message);
      }
      if (left.length) return { done: false, detail: `${dn} is locked but still a member: ${left.join('; ')}` };

      const del = await conn.delete(dn, onlyIf(mine));
      if (del.code === Rc.success || del.code === Rc.noSuchObject) return { done: true };
      if (del.code === Rc.assertionFailed) return { done: true, detail: `${dn} lost its Gatehouse marker: left alone` };
      return { done: false, detail: denied(del) ? `the vaulted DN ${t.admin.login} may not delete entries under ${ou} (${said(del)})` : `could not delete ${dn} (${said(del)})` };
    } finally {
      conn.close();
    }
  }

  async elevate(t: JitTarget, _owner: AccountOwner): Promise<void> {
    const groups = t.jit.elevate?.grants ?? [];
    const conn = await AdminConnection.open(this.targetFor(t.resource), t.admin);
    const added: string[] = [];
    try {
      for (const group of groups) {
        const r = await conn.modify(group, ModOp.add, 'member', [t.admin.login]);
        if (r.code === Rc.attributeOrValueExists) continue;
        if (r.code !== Rc.success) {
          // Only what this call added is taken back: a membership that was there before stays.
          for (const g of added) await conn.modify(g, ModOp.delete, 'member', [t.admin.login]).catch(() => undefined);
          throw groupRefusal(t, group, r, 'add');
        }
        added.push(group);
      }
    } finally {
      conn.close();
    }
  }

  async unelevate(t: JitTarget): Promise<RemoveResult> {
    const groups = t.jit.elevate?.grants ?? [];
    const conn = await AdminConnection.open(this.targetFor(t.resource), t.admin);
    try {
      const left: string[] = [];
      for (const group of groups) {
        const r = await conn.modify(group, ModOp.delete, 'member', [t.admin.login]);
        if (r.code === Rc.success || r.code === Rc.noSuchAttribute || r.code === Rc.noSuchObject) continue;
        left.push(groupRefusal(t, group, r, 'remove').message);
      }
      return left.length ? { done: false, detail: left.join('; ') } : { done: true };
    } finally {
      conn.close();
    }
  }

  async listMarked(t: JitTarget): Promise<string[]> {
    const { ou } = ephemeral(t);
    const conn = await AdminConnection.open(this.targetFor(t.resource), t.admin);
    try {
      const { result, entries } = await conn.search(ou, Scope.one, MARKED, ['uid', 'description']);
      if (result.code === Rc.noSuchObject) return [];
      // A size limit still returns the first entries: the reconciler gets the rest on its next pass.
      if (result.code !== Rc.success && result.code !== Rc.sizeLimitExceeded) {
        throw new JitError(denied(result) ? 'missing_right' : 'refused', `could not list the entries under ${ou} on ${t.resource.name} (${said(result)})`);
      }
      return entries.filter(isMarked).flatMap((e) => (e.attrs.get('uid') ?? []).filter((u) => NAME.test(u)));
    } finally {
      conn.close();
    }
  }
}

function ephemeral(t: JitTarget): { ou: string; grants: readonly string[] } {
  const e = t.jit.ephemeral;
  if (!e?.ou) throw new JitError('invalid', `${t.resource.name} has no OU for temporary entries (jit.ephemeral.ou)`);
  return { ou: e.ou, grants: e.grants };
}

function entryDn(name: string, ou: string): string {
  if (!NAME.test(name)) throw new JitError('invalid', `'${name.slice(0, 80)}' is not a temporary account name (lowercase letters, digits and _, at most 64)`);
  return `uid=${name},${ou}`;
}

function isMarked(e: Entry | undefined): boolean {
  return (e?.attrs.get('description') ?? []).some((d) => d.startsWith(MARKER));
}

function groupRefusal(t: JitTarget, group: string, r: Result, change: 'add' | 'remove'): JitError {
  const admin = t.admin.login;
  if (denied(r)) return new JitError('missing_right', `the vaulted DN ${admin} may not change the members of ${group} on ${t.resource.name} (${said(r)})`);
  if (r.code === Rc.noSuchObject) return new JitError('invalid', `the group ${group} does not exist on ${t.resource.name}, or the vaulted DN ${admin} may not see it (${said(r)})`);
  if (r.code === Rc.objectClassViolation && change === 'remove') {
    return new JitError('refused', `${group} on ${t.resource.name} would be left without a member, which groupOfNames does not allow; give it another member (${said(r)})`);
  }
  return new JitError('refused', `${t.resource.name} refused to ${change} a member of ${group} (${said(r)})`);
}

/** A failed create takes back what it did, as far as it can; the manager's remove does the rest. */
async function undo(conn: AdminConnection, dn: string, joined: readonly string[]): Promise<void> {
  try {
    for (const group of joined) await conn.modify(group, ModOp.delete, 'member', [dn]);
    await conn.delete(dn, onlyIfMarked());
  } catch {
    // The connection is gone: remove() retries.
  }
}

/** The naming context (from the rootDSE) that holds the OU: where groups listing an entry are searched. */
async function namingContext(conn: AdminConnection, ou: string): Promise<string | undefined> {
  const root = await conn.search('', Scope.base, Filter.present('objectClass'), ['namingContexts']);
  const contexts = root.entries[0]?.attrs.get('namingcontexts') ?? [];
  return contexts.find((c) => {
    const rdns = parseDn(c);
    return rdns !== undefined && isWithin(ou, rdns);
  });
}
