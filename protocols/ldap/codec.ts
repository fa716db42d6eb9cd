/**
 * LDAPv3 (RFC 4511) as far as the gateway needs it: the BER envelope of every message
 * (definite lengths only, at most 4 length octets, checked against a cap before a byte of
 * the body is buffered), the operations the gateway acts on (Bind, Unbind, Abandon,
 * Extended, controls) and what it checks or audits of the others (the DNs an operation
 * names, a search's scope and filter). Everything else is relayed as the client sent it.
 * Decoders throw nothing but LdapDecodeError, and every length is checked against the
 * bytes of its enclosing element.
 */

export type LdapDecodeCode =
  | 'LDAP_BAD_TAG'
  | 'LDAP_INDEFINITE_LENGTH'
  | 'LDAP_LENGTH_OCTETS'
  | 'LDAP_TOO_LARGE'
  | 'LDAP_TRUNCATED'
  | 'LDAP_BAD_MESSAGE'
  | 'LDAP_BAD_MESSAGE_ID'
  | 'LDAP_TOO_DEEP';

export class LdapDecodeError extends Error {
  constructor(
    readonly code: LdapDecodeCode,
    message: string,
  ) {
    super(message);
    this.name = 'LdapDecodeError';
  }
}

/** Universal BER tags the envelope uses. */
export const Ber = {
  Boolean: 0x01,
  Integer: 0x02,
  OctetString: 0x04,
  Enumerated: 0x0a,
  Sequence: 0x30,
  Set: 0x31,
} as const;

/** protocolOp tags (APPLICATION class; constructed unless noted). */
export const Op = {
  BindRequest: 0x60,
  BindResponse: 0x61,
  /** Primitive, empty. */
  UnbindRequest: 0x42,
  SearchRequest: 0x63,
  SearchResultEntry: 0x64,
  SearchResultDone: 0x65,
  SearchResultReference: 0x73,
  ModifyRequest: 0x66,
  ModifyResponse: 0x67,
  AddRequest: 0x68,
  AddResponse: 0x69,
  /** Primitive: the DN is the content. */
  DelRequest: 0x4a,
  DelResponse: 0x6b,
  ModifyDNRequest: 0x6c,
  ModifyDNResponse: 0x6d,
  CompareRequest: 0x6e,
  CompareResponse: 0x6f,
  /** Primitive: the message id to abandon is the content. */
  AbandonRequest: 0x50,
  ExtendedRequest: 0x77,
  ExtendedResponse: 0x78,
  IntermediateResponse: 0x79,
} as const;

/** Context tags inside operations. */
const Ctx = {
  /** BindRequest authentication: simple [0] OCTET STRING. */
  SimpleAuth: 0x80,
  /** BindRequest authentication: sasl [3] SaslCredentials. */
  SaslAuth: 0xa3,
  /** LDAPMessage controls [0]. */
  Controls: 0xa0,
  /** LDAPResult referral [3]. */
  Referral: 0xa3,
  /** ExtendedRequest requestName [0], requestValue [1]. */
  RequestName: 0x80,
  RequestValue: 0x81,
  /** ExtendedResponse responseName [10], responseValue [11]. */
  ResponseName: 0x8a,
  ResponseValue: 0x8b,
  /** ModifyDNRequest newSuperior [0]. */
  NewSuperior: 0x80,
} as const;

/** Result codes (RFC 4511 4.1.9, RFC 4370) the gateway itself returns. */
export const ResultCode = {
  success: 0,
  operationsError: 1,
  protocolError: 2,
  authMethodNotSupported: 7,
  referral: 10,
  unavailableCriticalExtension: 12,
  confidentialityRequired: 13,
  noSuchObject: 32,
  invalidCredentials: 49,
  insufficientAccessRights: 50,
  busy: 51,
  unavailable: 52,
  unwillingToPerform: 53,
  other: 80,
  authorizationDenied: 123,
} as const;

/** Object identifiers the gateway acts on. */
export const Oid = {
  startTls: '1.3.6.1.4.1.1466.20037',
  noticeOfDisconnection: '1.3.6.1.4.1.1466.20036',
  whoAmI: '1.3.6.1.4.1.4203.1.11.3',
  passwordModify: '1.3.6.1.4.1.4203.1.11.1',
  cancel: '1.3.6.1.1.8',
  pagedResults: '1.2.840.113556.1.4.319',
  proxyAuthz: '2.16.840.1.113730.3.4.18',
  manageDsaIT: '2.16.840.1.113730.3.4.2',
  persistentSearch: '2.16.840.1.113730.3.4.3',
  syncRequest: '1.3.6.1.4.1.4203.1.9.1.1',
} as const;

/** LDAP message ids are 0..2^31-1; 0 is reserved for unsolicited notifications. */
export const MAX_MESSAGE_ID = 0x7fffffff;
/** Filters nest (and/or/not); deeper than this is an attack, not a query. */
export const MAX_FILTER_DEPTH = 32;

/** One BER element inside a buffer: its tag and where its contents are. */
export interface Tlv {
  tag: number;
  /** Where the element (its tag) starts. */
  at: number;
  /** First byte of the contents. */
  start: number;
  /** One past the last byte of the contents (and of the element). */
  end: number;
}

/**
 * Reads the tag and length at `pos`; the element must end by `limit`. Single-byte tags only
 * (LDAP uses no high tag numbers); definite lengths of at most 4 octets.
 */
export function readTlv(buf: Buffer, pos: number, limit: number): Tlv {
  if (pos + 2 > limit) throw new LdapDecodeError('LDAP_TRUNCATED', 'element truncated');
  const tag = buf[pos]!;
  if ((tag & 0x1f) === 0x1f) throw new LdapDecodeError('LDAP_BAD_TAG', `multi-byte tag 0x${tag.toString(16)}`);
  const h = header(buf, pos + 1, limit);
  if (h === undefined) throw new LdapDecodeError('LDAP_TRUNCATED', 'length truncated');
  const start = pos + 1 + h.octets;
  if (start + h.length > limit) throw new LdapDecodeError('LDAP_TRUNCATED', `element of ${h.length} bytes overruns its container`);
  return { tag, at: pos, start, end: start + h.length };
}

/** The length at `pos`: its value and how many bytes it took, or undefined if more are needed. */
function header(buf: Buffer, pos: number, limit: number): { length: number; octets: number } | undefined {
  if (pos >= limit) return undefined;
  const first = buf[pos]!;
  if (first < 0x80) return { length: first, octets: 1 };
  if (first === 0x80) throw new LdapDecodeError('LDAP_INDEFINITE_LENGTH', 'indefinite lengths are not allowed in LDAP');
  const n = first & 0x7f;
  if (n > 4) throw new LdapDecodeError('LDAP_LENGTH_OCTETS', `a length of ${n} octets (at most 4)`);
  if (pos + 1 + n > limit) return undefined;
  let length = 0;
  // Multiplication, not shifts: 4 octets can exceed a signed 32-bit integer.
  for (let i = 1; i <= n; i++) length = length * 256 + buf[pos + i]!;
  return { length, octets: 1 + n };
}

/**
 * The size of the LDAPMessage at the start of `buf`, or undefined when more bytes are needed.
 * The length is judged against `cap` as soon as its octets are there, before any of the body
 * is waited for, so a peer cannot make the gateway buffer more than the cap.
 */
export function frameSize(buf: Buffer, cap: number): number | undefined {
  if (buf.length === 0) return undefined;
  if (buf[0] !== Ber.Sequence) throw new LdapDecodeError('LDAP_BAD_TAG', `an LDAP message starts with a SEQUENCE, not 0x${buf[0]!.toString(16)}`);
  const h = header(buf, 1, buf.length);
  if (h === undefined) return undefined;
  if (h.length > cap) throw new LdapDecodeError('LDAP_TOO_LARGE', `a message of ${h.length} bytes is over the limit of ${cap}`);
  const size = 1 + h.octets + h.length;
  return buf.length >= size ? size : undefined;
}

/** A control of a request (RFC 4511 4.1.11). */
export interface Control {
  oid: string;
  critical: boolean;
  /** Where the control's element is in the frame (to keep or drop it as sent). */
  start: number;
  end: number;
}

/** The envelope of one LDAPMessage; the operation itself stays in the frame. */
export interface Envelope {
  id: number;
  op: number;
  /** The protocolOp element (tag and contents) within the frame. */
  opTlv: Tlv;
  controls: Control[];
}

function integer(buf: Buffer, t: Tlv, what: string): number {
  const len = t.end - t.start;
  if (len < 1 || len > 5) throw new LdapDecodeError('LDAP_BAD_MESSAGE', `${what}: an integer of ${len} bytes`);
  // Two's complement: a negative value starts from -1 and takes each byte in.
  let v = buf[t.start]! & 0x80 ? -1 : 0;
  for (let i = t.start; i < t.end; i++) v = v * 256 + buf[i]!;
  return v;
}

function expect(t: Tlv, tag: number, what: string): Tlv {
  if (t.tag !== tag) throw new LdapDecodeError('LDAP_BAD_MESSAGE', `${what}: expected tag 0x${tag.toString(16)}, got 0x${t.tag.toString(16)}`);
  return t;
}

const text = (buf: Buffer, t: Tlv): string => buf.toString('utf8', t.start, t.end);

/**
 * The envelope of a complete frame (from frameSize). The message id must be 1..2^31-1 for a
 * request (`allowZero` for the target's unsolicited notifications); nothing may follow the
 * controls.
 */
export function decodeEnvelope(frame: Buffer, allowZero = false): Envelope {
  const outer = expect(readTlv(frame, 0, frame.length), Ber.Sequence, 'LDAPMessage');
  if (outer.end !== frame.length) throw new LdapDecodeError('LDAP_BAD_MESSAGE', 'bytes after the message');
  const idTlv = readTlv(frame, outer.start, outer.end);
  if (idTlv.tag !== Ber.Integer) throw new LdapDecodeError('LDAP_BAD_MESSAGE_ID', 'the message id is not an INTEGER');
  const idLen = idTlv.end - idTlv.start;
  if (idLen < 1 || idLen > 4 || frame[idTlv.start]! & 0x80) throw new LdapDecodeError('LDAP_BAD_MESSAGE_ID', 'the message id is out of range');
  const id = integer(frame, idTlv, 'messageID');
  if (id > MAX_MESSAGE_ID || (id === 0 && !allowZero)) throw new LdapDecodeError('LDAP_BAD_MESSAGE_ID', `message id ${id} is out of range (1..${MAX_MESSAGE_ID})`);
  const opTlv = readTlv(frame, idTlv.end, outer.end);
  const env: Envelope = { id, op: opTlv.tag, opTlv, controls: [] };
  if (opTlv.end === outer.end) return env;
  const c = expect(readTlv(frame, opTlv.end, outer.end), Ctx.Controls, 'controls');
  if (c.end !== outer.end) throw new LdapDecodeError('LDAP_BAD_MESSAGE', 'bytes after the controls');
  for (let pos = c.start; pos < c.end; ) {
    const ctl = expect(readTlv(frame, pos, c.end), Ber.Sequence, 'control');
    const oid = expect(readTlv(frame, ctl.start, ctl.end), Ber.OctetString, 'controlType');
    let critical = false;
    let at = oid.end;
    if (at < ctl.end) {
      const next = readTlv(frame, at, ctl.end);
      if (next.tag === Ber.Boolean) {
        if (next.end - next.start !== 1) throw new LdapDecodeError('LDAP_BAD_MESSAGE', 'criticality is not one byte');
        critical = frame[next.start] !== 0;
        at = next.end;
      }
      if (at < ctl.end) {
        const value = expect(readTlv(frame, at, ctl.end), Ber.OctetString, 'controlValue');
        if (value.end !== ctl.end) throw new LdapDecodeError('LDAP_BAD_MESSAGE', 'bytes after a control value');
      }
    }
    env.controls.push({ oid: text(frame, oid), critical, start: pos, end: ctl.end });
    pos = ctl.end;
  }
  return env;
}

/** A BindRequest: version, name, and either a simple password or a SASL mechanism. */
export type BindRequest =
  | { version: number; name: string; kind: 'simple'; password: string }
  | { version: number; name: string; kind: 'sasl'; mechanism: string }
  | { version: number; name: string; kind: 'other'; tag: number };

export function decodeBind(frame: Buffer, env: Envelope): BindRequest {
  const op = env.opTlv;
  const v = expect(readTlv(frame, op.start, op.end), Ber.Integer, 'bind version');
  const version = integer(frame, v, 'version');
  const name = expect(readTlv(frame, v.end, op.end), Ber.OctetString, 'bind name');
  const auth = readTlv(frame, name.end, op.end);
  const dn = text(frame, name);
  if (auth.tag === Ctx.SimpleAuth) return { version, name: dn, kind: 'simple', password: text(frame, auth) };
  if (auth.tag === Ctx.SaslAuth) {
    const mech = expect(readTlv(frame, auth.start, auth.end), Ber.OctetString, 'SASL mechanism');
    return { version, name: dn, kind: 'sasl', mechanism: text(frame, mech) };
  }
  return { version, name: dn, kind: 'other', tag: auth.tag };
}

export function decodeExtended(frame: Buffer, env: Envelope): { oid: string; hasValue: boolean } {
  const op = env.opTlv;
  const name = expect(readTlv(frame, op.start, op.end), Ctx.RequestName, 'requestName');
  return { oid: text(frame, name), hasValue: name.end < op.end };
}

/** The message id an AbandonRequest names. */
export function decodeAbandon(frame: Buffer, env: Envelope): number {
  return integer(frame, env.opTlv, 'abandon id');
}

/** Search scopes (RFC 4511 4.5.1.2) and how the audit names them. */
export const SCOPES = ['base', 'one', 'sub', 'children'] as const;

/** What the gateway checks and audits of a request: the DNs it names, a search's shape. */
export interface RequestFacts {
  /** The operation, as the audit names it. */
  op: 'search' | 'compare' | 'add' | 'modify' | 'delete' | 'modrdn';
  /** The entry the operation names (a search's base). */
  dn: string;
  /** A modrdn's new parent, and the entry's new name under it. */
  newSuperior?: string;
  newRdn?: string;
  scope?: (typeof SCOPES)[number] | string;
  /** derefAliases: 0 never ... 3 always. */
  deref?: number;
  /** The filter as text (RFC 4515), with assertion values of password attributes masked. */
  filter?: string;
  /** A compare's attribute; an add's or modify's attribute names (values never). */
  attributes?: string[];
}

/** Facts of the operations the gateway relays; undefined for any other operation tag. */
export function decodeRequestFacts(frame: Buffer, env: Envelope): RequestFacts | undefined {
  const op = env.opTlv;
  switch (env.op) {
    case Op.SearchRequest: {
      const base = expect(readTlv(frame, op.start, op.end), Ber.OctetString, 'search base');
      const scope = expect(readTlv(frame, base.end, op.end), Ber.Enumerated, 'scope');
      const deref = expect(readTlv(frame, scope.end, op.end), Ber.Enumerated, 'derefAliases');
      const size = expect(readTlv(frame, deref.end, op.end), Ber.Integer, 'sizeLimit');
      const time = expect(readTlv(frame, size.end, op.end), Ber.Integer, 'timeLimit');
      const typesOnly = expect(readTlv(frame, time.end, op.end), Ber.Boolean, 'typesOnly');
      const s = integer(frame, scope, 'scope');
      return {
        op: 'search', dn: text(frame, base), scope: SCOPES[s] ?? String(s), deref: integer(frame, deref, 'deref'),
        filter: filterText(frame, typesOnly.end, op.end, 0).text,
      };
    }
    case Op.CompareRequest: {
      const entry = expect(readTlv(frame, op.start, op.end), Ber.OctetString, 'compare entry');
      const ava = expect(readTlv(frame, entry.end, op.end), Ber.Sequence, 'compare assertion');
      const attr = expect(readTlv(frame, ava.start, ava.end), Ber.OctetString, 'compare attribute');
      return { op: 'compare', dn: text(frame, entry), attributes: [text(frame, attr)] };
    }
    case Op.AddRequest: {
      const entry = expect(readTlv(frame, op.start, op.end), Ber.OctetString, 'add entry');
      const list = expect(readTlv(frame, entry.end, op.end), Ber.Sequence, 'add attributes');
      return { op: 'add', dn: text(frame, entry), attributes: attributeNames(frame, list, (t) => t) };
    }
    case Op.ModifyRequest: {
      const obj = expect(readTlv(frame, op.start, op.end), Ber.OctetString, 'modify object');
      const changes = expect(readTlv(frame, obj.end, op.end), Ber.Sequence, 'modify changes');
      // Each change is SEQUENCE { operation ENUMERATED, modification PartialAttribute }.
      const names = attributeNames(frame, changes, (change) => {
        const kind = expect(readTlv(frame, change.start, change.end), Ber.Enumerated, 'modify operation');
        return expect(readTlv(frame, kind.end, change.end), Ber.Sequence, 'modification');
      });
      return { op: 'modify', dn: text(frame, obj), attributes: names };
    }
    case Op.DelRequest:
      return { op: 'delete', dn: text(frame, op) };
    case Op.ModifyDNRequest: {
      const entry = expect(readTlv(frame, op.start, op.end), Ber.OctetString, 'modrdn entry');
      const rdn = expect(readTlv(frame, entry.end, op.end), Ber.OctetString, 'newrdn');
      const del = expect(readTlv(frame, rdn.end, op.end), Ber.Boolean, 'deleteoldrdn');
      const facts: RequestFacts = { op: 'modrdn', dn: text(frame, entry), newRdn: text(frame, rdn) };
      if (del.end < op.end) facts.newSuperior = text(frame, expect(readTlv(frame, del.end, op.end), Ctx.NewSuperior, 'newSuperior'));
      return facts;
    }
    default:
      return undefined;
  }
}

/** The attribute names of a list of SEQUENCE { type, vals } (through `inner` for modify's wrapping). */
function attributeNames(frame: Buffer, list: Tlv, inner: (item: Tlv) => Tlv): string[] {
  const names: string[] = [];
  for (let pos = list.start; pos < list.end; ) {
    const item = expect(readTlv(frame, pos, list.end), Ber.Sequence, 'attribute');
    const attr = inner(item);
    names.push(text(frame, expect(readTlv(frame, attr.start, attr.end), Ber.OctetString, 'attribute type')));
    pos = item.end;
  }
  return names;
}

/**
 * Attributes whose values are secrets, by name and OID: a filter on them is audited without
 * the value. An attribute description may carry options (`userPassword;binary`) and may
 * name the type by its OID (RFC 4512 2.5), so both are reduced to the type first.
 */
const SECRET_ATTRIBUTES = new Set([
  'userpassword', '2.5.4.35',
  'unicodepwd', '1.2.840.113556.1.4.90',
  'authpassword', '1.3.6.1.4.1.4203.1.3.4',
  'sambantpassword', '1.3.6.1.4.1.7165.2.1.25',
  'sambalmpassword', '1.3.6.1.4.1.7165.2.1.24',
  'krbprincipalkey', '2.16.840.1.113719.1.301.4.2.1',
  'userpkcs12', '2.16.840.1.113730.3.1.216',
  'supplementalcredentials', '1.2.840.113556.1.4.125',
]);

const isSecretAttribute = (description: string): boolean => SECRET_ATTRIBUTES.has(description.split(';')[0]!.trim().toLowerCase());

/** RFC 4515 escaping of a value's bytes: *, (, ), \, NUL and anything not printable ASCII. */
function escapeBytes(buf: Buffer, start: number, end: number, max: number): string {
  let s = '';
  for (let i = start; i < end && s.length < max; i++) {
    const b = buf[i]!;
    s += b < 0x20 || b > 0x7e || b === 0x2a || b === 0x28 || b === 0x29 || b === 0x5c ? `\\${b.toString(16).padStart(2, '0')}` : String.fromCharCode(b);
  }
  return s;
}

const escapeValue = (buf: Buffer, t: Tlv): string => escapeBytes(buf, t.start, t.end, 256);

/** An attribute description as the audit shows it: only its legal characters as they are (RFC 4512 2.5). */
function attributeText(buf: Buffer, t: Tlv): string {
  let s = '';
  for (let i = t.start; i < t.end && s.length < 128; i++) {
    const b = buf[i]!;
    const legal = (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a) || b === 0x2d || b === 0x2e || b === 0x3b;
    s += legal ? String.fromCharCode(b) : `\\${b.toString(16).padStart(2, '0')}`;
  }
  return s;
}

const FILTER_OPS: Record<number, string> = { 0xa3: '=', 0xa5: '>=', 0xa6: '<=', 0xa8: '~=' };

/** A filter (RFC 4511 4.5.1.7) as RFC 4515 text; nesting deeper than MAX_FILTER_DEPTH is refused. */
function filterText(buf: Buffer, pos: number, limit: number, depth: number): { text: string; end: number } {
  if (depth > MAX_FILTER_DEPTH) throw new LdapDecodeError('LDAP_TOO_DEEP', `a filter nested deeper than ${MAX_FILTER_DEPTH}`);
  const t = readTlv(buf, pos, limit);
  const value = (attr: string, v: Tlv): string => (isSecretAttribute(attr) ? '***' : escapeValue(buf, v));
  switch (t.tag) {
    case 0xa0:
    case 0xa1: {
      let inner = '';
      for (let p = t.start; p < t.end; ) {
        const f = filterText(buf, p, t.end, depth + 1);
        inner += f.text;
        p = f.end;
      }
      return { text: `(${t.tag === 0xa0 ? '&' : '|'}${inner})`, end: t.end };
    }
    case 0xa2: {
      const f = filterText(buf, t.start, t.end, depth + 1);
      return { text: `(!${f.text})`, end: t.end };
    }
    case 0xa3:
    case 0xa5:
    case 0xa6:
    case 0xa8: {
      const attr = expect(readTlv(buf, t.start, t.end), Ber.OctetString, 'filter attribute');
      const v = expect(readTlv(buf, attr.end, t.end), Ber.OctetString, 'filter value');
      const name = attributeText(buf, attr);
      return { text: `(${name}${FILTER_OPS[t.tag]}${value(name, v)})`, end: t.end };
    }
    case 0xa4: {
      const attr = expect(readTlv(buf, t.start, t.end), Ber.OctetString, 'substring attribute');
      const subs = expect(readTlv(buf, attr.end, t.end), Ber.Sequence, 'substrings');
      const name = attributeText(buf, attr);
      let initial = '';
      let final = '';
      const any: string[] = [];
      for (let p = subs.start; p < subs.end; ) {
        const s = readTlv(buf, p, subs.end);
        const v = value(name, s);
        if (s.tag === 0x80) initial = v;
        else if (s.tag === 0x81) any.push(v);
        else if (s.tag === 0x82) final = v;
        else throw new LdapDecodeError('LDAP_BAD_MESSAGE', `substring choice 0x${s.tag.toString(16)}`);
        p = s.end;
      }
      return { text: `(${name}=${[initial, ...any, final].join('*')})`, end: t.end };
    }
    case 0x87:
      return { text: `(${attributeText(buf, t)}=*)`, end: t.end };
    case 0xa9: {
      // MatchingRuleAssertion: matchingRule [1], type [2], matchValue [3], dnAttributes [4], in any order here.
      let rule = '';
      let type = '';
      let val: Tlv | undefined;
      let dn = false;
      for (let p = t.start; p < t.end; ) {
        const s = readTlv(buf, p, t.end);
        if (s.tag === 0x81) rule = attributeText(buf, s);
        else if (s.tag === 0x82) type = attributeText(buf, s);
        else if (s.tag === 0x83) val = s;
        else if (s.tag === 0x84) dn = s.end > s.start && buf[s.start] !== 0;
        p = s.end;
      }
      // Without a type the rule may apply to any attribute, a password too: the value is not shown.
      const shown = val === undefined ? '' : type === '' || isSecretAttribute(type) ? '***' : escapeValue(buf, val);
      return { text: `(${type}${dn ? ':dn' : ''}${rule ? `:${rule}` : ''}:=${shown})`, end: t.end };
    }
    default:
      throw new LdapDecodeError('LDAP_BAD_MESSAGE', `filter choice 0x${t.tag.toString(16)}`);
  }
}

/** The head of a response from the target: enough to strip referrals and notice notifications. */
export interface ResponseHead {
  /** resultCode, for operations whose response is an LDAPResult. */
  resultCode?: number;
  /** The referral [3] element of the LDAPResult, if the target sent one. */
  referral?: Tlv;
  /** An ExtendedResponse's responseName. */
  responseName?: string;
  diagnosticMessage?: string;
}

const RESULT_OPS: ReadonlySet<number> = new Set([
  Op.BindResponse, Op.SearchResultDone, Op.ModifyResponse, Op.AddResponse, Op.DelResponse, Op.ModifyDNResponse, Op.CompareResponse, Op.ExtendedResponse,
]);

export function decodeResponseHead(frame: Buffer, env: Envelope): ResponseHead {
  if (!RESULT_OPS.has(env.op)) return {};
  const op = env.opTlv;
  const code = expect(readTlv(frame, op.start, op.end), Ber.Enumerated, 'resultCode');
  const matched = expect(readTlv(frame, code.end, op.end), Ber.OctetString, 'matchedDN');
  const diag = expect(readTlv(frame, matched.end, op.end), Ber.OctetString, 'diagnosticMessage');
  const head: ResponseHead = { resultCode: integer(frame, code, 'resultCode'), diagnosticMessage: text(frame, diag) };
  for (let pos = diag.end; pos < op.end; ) {
    const t = readTlv(frame, pos, op.end);
    if (t.tag === Ctx.Referral) head.referral = t;
    else if (t.tag === Ctx.ResponseName && env.op === Op.ExtendedResponse) head.responseName = text(frame, t);
    pos = t.end;
  }
  return head;
}

// ---------------------------------------------------------------------------------------
// Encoding

function lengthBytes(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  if (n <= 0xff) return Buffer.from([0x81, n]);
  if (n <= 0xffff) return Buffer.from([0x82, n >> 8, n & 0xff]);
  if (n <= 0xffffff) return Buffer.from([0x83, n >> 16, (n >> 8) & 0xff, n & 0xff]);
  return Buffer.from([0x84, (n >>> 24) & 0xff, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff]);
}

export function tlv(tag: number, ...contents: Buffer[]): Buffer {
  const body = contents.length === 1 ? contents[0]! : Buffer.concat(contents);
  return Buffer.concat([Buffer.from([tag]), lengthBytes(body.length), body]);
}

function intBytes(tag: number, n: number): Buffer {
  const bytes: number[] = [];
  let v = n;
  do {
    bytes.unshift(v & 0xff);
    v = Math.floor(v / 256);
  } while (v > 0);
  if (bytes[0]! & 0x80) bytes.unshift(0);
  return tlv(tag, Buffer.from(bytes));
}

const str = (tag: number, s: string): Buffer => tlv(tag, Buffer.from(s, 'utf8'));

/** An LDAPMessage around an encoded protocolOp (and the controls element, if any). */
export function message(id: number, op: Buffer, controls?: Buffer): Buffer {
  return controls ? tlv(Ber.Sequence, intBytes(Ber.Integer, id), op, controls) : tlv(Ber.Sequence, intBytes(Ber.Integer, id), op);
}

function resultBody(code: number, diagnostic: string, matched = ''): Buffer[] {
  return [intBytes(Ber.Enumerated, code), str(Ber.OctetString, matched), str(Ber.OctetString, diagnostic)];
}

/** An LDAPResult-shaped response (BindResponse, SearchResultDone, ModifyResponse, ...). */
export function resultMessage(id: number, responseOp: number, code: number, diagnostic: string): Buffer {
  return message(id, tlv(responseOp, ...resultBody(code, diagnostic)));
}

export function extendedResponse(id: number, code: number, diagnostic: string, name?: string, value?: Buffer): Buffer {
  const parts = resultBody(code, diagnostic);
  if (name !== undefined) parts.push(str(Ctx.ResponseName, name));
  if (value !== undefined) parts.push(tlv(Ctx.ResponseValue, value));
  return message(id, tlv(Op.ExtendedResponse, ...parts));
}

/**
 * The Notice of Disconnection (RFC 4511 4.4.1): message id 0, an ExtendedResponse with the
 * notice's OID as responseName and no responseValue. The connection closes right after.
 */
export function noticeOfDisconnection(code: number, diagnostic: string): Buffer {
  return extendedResponse(0, code, diagnostic, Oid.noticeOfDisconnection);
}

/** A SearchResultEntry of attribute → values (for the rootDSE the gateway answers itself). */
export function searchEntry(id: number, dn: string, attrs: Record<string, readonly string[]>): Buffer {
  const list = Object.entries(attrs).map(([k, vs]) => tlv(Ber.Sequence, str(Ber.OctetString, k), tlv(Ber.Set, ...vs.map((v) => str(Ber.OctetString, v)))));
  return message(id, tlv(Op.SearchResultEntry, str(Ber.OctetString, dn), tlv(Ber.Sequence, ...list)));
}

export function simpleBindRequest(id: number, dn: string, password: string): Buffer {
  return message(id, tlv(Op.BindRequest, intBytes(Ber.Integer, 3), str(Ber.OctetString, dn), str(Ctx.SimpleAuth, password)));
}

export function extendedRequest(id: number, oid: string): Buffer {
  return message(id, tlv(Op.ExtendedRequest, str(Ctx.RequestName, oid)));
}

export function unbindRequest(id: number): Buffer {
  return message(id, Buffer.from([Op.UnbindRequest, 0]));
}

/**
 * The frame without the LDAPResult's referral (the gateway never hands a client a URL to
 * another server); everything else as the target sent it.
 */
export function withoutReferral(frame: Buffer, env: Envelope, referral: Tlv): Buffer {
  const op = env.opTlv;
  const body = Buffer.concat([frame.subarray(op.start, referral.at), frame.subarray(referral.end, op.end)]);
  const rest = frame.subarray(op.end);
  return tlv(Ber.Sequence, frame.subarray(idStart(frame), env.opTlv.at), tlv(env.op, body), rest);
}

/** The frame with only the controls at the given positions kept (the others dropped). */
export function withControls(frame: Buffer, env: Envelope, keep: readonly Control[]): Buffer {
  const head = frame.subarray(idStart(frame), env.opTlv.end);
  if (keep.length === 0) return tlv(Ber.Sequence, head);
  return tlv(Ber.Sequence, head, tlv(Ctx.Controls, ...keep.map((c) => frame.subarray(c.start, c.end))));
}

/** Where the message id starts: right after the outer SEQUENCE's tag and length. */
function idStart(frame: Buffer): number {
  return readTlv(frame, 0, frame.length).start;
}
