import { createHmac, timingSafeEqual } from 'node:crypto';
import type { Clock } from '../core/clock.js';
import { GatehouseError } from '../core/errors.js';
import type { AuditEntry } from '../core/model.js';
import type { Store } from '../store/store.js';
import { AUDIT_GENESIS } from '../store/store.js';
import { checkpointSignatureValid, signCheckpoint, type AuditCheckpoint, type CheckpointProblem } from './checkpoint.js';

export type { AuditCheckpoint } from './checkpoint.js';

/**
 * The `prev` of entry 1. Stores assign `prev`, so every backend must use this same value
 * (the SQLite store's AUDIT_GENESIS is 'genesis').
 */
export { AUDIT_GENESIS };

/** Meta key holding `{ seq, mac }` of the newest entry, so a truncated tail is noticed. */
export const AUDIT_HEAD_META = 'audit.head';

/** Key names whose values never enter the audit log, at any depth (compared case-insensitively). */
const SECRET_KEYS = new Set([
  'password',
  'passphrase',
  'secret',
  'totpsecret',
  'ticket',
  'token',
  'privatekey',
  'masterkey',
  'credentials',
  'authorization',
]);

const PAGE = 1000;

export type AuditProblem = 'mac_mismatch' | 'broken_link' | 'sequence_gap' | 'bad_genesis' | 'truncated' | 'anchor_mismatch' | 'anchor_missing' | CheckpointProblem;

/**
 * `count` is the number of entries that checked out before the first problem (all of them
 * when ok). `firstBadSeq` is the seq of the first stored entry that fails; for `truncated`
 * it is the first seq missing from the tail, for `anchor_mismatch` the anchored seq (the
 * head's seq when the anchor is unreadable).
 */
export type AuditVerifyResult =
  | { ok: true; count: number; head: string }
  | { ok: false; count: number; firstBadSeq: number; problem: AuditProblem };

export interface AuditLogOptions {
  store: Store;
  /** HMAC key, from its own key file (see audit-key.ts); at least 32 bytes. */
  key: Buffer;
  clock: Clock;
  /** Names this gateway in checkpoints. */
  node?: string;
  /** Called with a signed checkpoint every `checkpointEvery` entries (default 100), to ship it off the box. */
  onCheckpoint?: (c: AuditCheckpoint) => void;
  checkpointEvery?: number;
}

/**
 * The append-only, hash-chained audit log. Each entry's MAC is HMAC-SHA256 over the
 * canonical JSON of the entry including its seq and the previous entry's MAC, so editing,
 * deleting, inserting or reordering entries breaks the chain at the first affected seq.
 * Without the key, a forger cannot compute a MAC that verifies.
 */
export class AuditLog {
  readonly #key: Buffer;
  readonly #checkpointKey: Buffer;
  private readonly store: Store;
  private readonly node: string;
  private readonly onCheckpoint: ((c: AuditCheckpoint) => void) | undefined;
  private readonly checkpointEvery: number;
  private readonly clock: Clock;
  // Anchor writes are chained so a slow earlier write never overwrites a newer head.
  private anchorWrite: Promise<void> = Promise.resolve();
  private anchoredSeq = 0;

  constructor(opts: AuditLogOptions) {
    if (!Buffer.isBuffer(opts.key) || opts.key.length < 32) {
      throw new GatehouseError('CONFIG_INVALID', 'audit MAC key must be at least 32 bytes');
    }
    this.#key = Buffer.from(opts.key);
    this.#checkpointKey = createHmac('sha256', this.#key).update('gatehouse/audit-checkpoint/v1').digest();
    this.store = opts.store;
    this.clock = opts.clock;
    this.node = opts.node ?? 'gateway';
    this.onCheckpoint = opts.onCheckpoint;
    this.checkpointEvery = opts.checkpointEvery ?? 100;
  }

  /** A signed checkpoint of the current head, to keep where the database writer cannot reach. */
  async checkpoint(): Promise<AuditCheckpoint> {
    const head = (await this.store.listAudit({ limit: 1, newest: true }))[0];
    return signCheckpoint(this.#checkpointKey, { seq: head?.seq ?? 0, mac: head?.mac ?? AUDIT_GENESIS, at: this.clock.now().toISOString(), node: this.node });
  }

  async record(actor: string, action: string, subject: string, data: Record<string, unknown> = {}): Promise<AuditEntry> {
    return (await this.recordMany([{ actor, action, subject, data }]))[0]!;
  }

  /**
   * Several entries, consecutive in the chain and written in one transaction (all or none): a
   * mass teardown audits its sessions' ends this way. Same sealing, anchor and checkpoints as
   * `record`, entry by entry.
   */
  async recordMany(items: ReadonlyArray<{ actor: string; action: string; subject: string; data?: Record<string, unknown> }>): Promise<AuditEntry[]> {
    if (items.length === 0) return [];
    const at = this.clock.now();
    // Round-trip through JSON so the sealed data is exactly what the store will hand back.
    const drafts = items.map((i) => ({ at, actor: i.actor, action: i.action, subject: i.subject, data: JSON.parse(JSON.stringify(stripSecrets(i.data ?? {}) ?? {})) as Record<string, unknown> }));
    const seal = (unsealed: Omit<AuditEntry, 'mac'>): string => this.mac(unsealed);
    const entries = drafts.length === 1 ? [await this.store.appendAudit(drafts[0]!, seal)] : await this.store.appendAuditBatch(drafts, seal);
    await this.anchor(entries[entries.length - 1]!);
    if (this.onCheckpoint) {
      for (const entry of entries) {
        if (entry.seq % this.checkpointEvery === 0) {
          this.onCheckpoint(signCheckpoint(this.#checkpointKey, { seq: entry.seq, mac: entry.mac, at: this.clock.now().toISOString(), node: this.node }));
        }
      }
    }
    return entries;
  }

  /**
   * Walks the whole chain in seq order and reports the first entry that does not hold up;
   * with a checkpoint kept elsewhere, also that the chain still holds the entry it names.
   */
  async verify(opts: { checkpoint?: AuditCheckpoint } = {}): Promise<AuditVerifyResult> {
    const cp = opts.checkpoint;
    if (cp && !checkpointSignatureValid(this.#checkpointKey, cp)) return { ok: false, count: 0, firstBadSeq: cp.seq, problem: 'checkpoint_signature' };
    // Read the anchor before the entries: appends racing with the walk then only add entries
    // past the anchor, never make a healthy log look truncated.
    const anchor = parseAnchor(await this.store.getMeta(AUDIT_HEAD_META));
    let count = 0;
    let expectedPrev = AUDIT_GENESIS;
    let afterSeq = 0;
    const bad = (firstBadSeq: number, problem: AuditProblem): AuditVerifyResult => ({ ok: false, count, firstBadSeq, problem });
    for (;;) {
      const page = await this.store.listAudit({ afterSeq, limit: PAGE });
      for (const e of page) {
        const expectedSeq = count + 1;
        if (e.seq !== expectedSeq) return bad(e.seq, 'sequence_gap');
        if (expectedSeq === 1 && e.prev !== AUDIT_GENESIS) return bad(e.seq, 'bad_genesis');
        if (e.prev !== expectedPrev) return bad(e.seq, 'broken_link');
        if (!macEquals(this.mac(e), e.mac)) return bad(e.seq, 'mac_mismatch');
        if (anchor !== 'invalid' && anchor?.seq === e.seq && anchor.mac !== e.mac) return bad(e.seq, 'anchor_mismatch');
        if (cp && cp.seq === e.seq && !macEquals(cp.mac, e.mac)) return bad(e.seq, 'checkpoint_mismatch');
        expectedPrev = e.mac;
        count++;
      }
      if (page.length < PAGE) break;
      afterSeq = page[page.length - 1]!.seq;
    }
    if (anchor === 'invalid') return bad(count, 'anchor_mismatch');
    if (cp && cp.seq > count) return bad(count + 1, 'checkpoint_truncated');
    // Entries but no anchor: the head row was deleted (with the tail, most likely).
    if (!anchor && count > 0) return bad(count, 'anchor_missing');
    if (anchor && anchor.seq > count) return bad(count + 1, 'truncated');
    // An anchor older than the head is normal when a node stopped between append and anchor.
    return { ok: true, count, head: expectedPrev };
  }

  /** HMAC-SHA256 (hex) of an entry's canonical form, `mac` itself excluded. */
  mac(entry: Omit<AuditEntry, 'mac'>): string {
    const body = canonicalJson({
      seq: entry.seq,
      at: entry.at.toISOString(),
      actor: entry.actor,
      action: entry.action,
      subject: entry.subject,
      data: entry.data,
      prev: entry.prev,
    });
    return createHmac('sha256', this.#key).update(body, 'utf8').digest('hex');
  }

  /**
   * The anchor lives in the same database as the chain, so it stops a careless or partial
   * truncation, not an attacker who rewrites meta too; for that, ship the head off the box
   * (the `audit verify` output, a webhook). It is still cheap and catches the common case.
   */
  private anchor(entry: AuditEntry): Promise<void> {
    const write = async (): Promise<void> => {
      if (entry.seq <= this.anchoredSeq) return;
      await this.store.setMeta(AUDIT_HEAD_META, JSON.stringify({ seq: entry.seq, mac: entry.mac }));
      this.anchoredSeq = entry.seq;
    };
    this.anchorWrite = this.anchorWrite.then(write, write);
    return this.anchorWrite;
  }

  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return 'AuditLog {}';
  }
}

function macEquals(a: string, b: string): boolean {
  const x = Buffer.from(a, 'utf8');
  const y = Buffer.from(b, 'utf8');
  return x.length === y.length && timingSafeEqual(x, y);
}

function parseAnchor(raw: string | undefined): { seq: number; mac: string } | undefined | 'invalid' {
  if (raw === undefined) return undefined;
  try {
    const v = JSON.parse(raw) as { seq?: unknown; mac?: unknown };
    if (Number.isSafeInteger(v.seq) && (v.seq as number) > 0 && typeof v.mac === 'string') {
      return { seq: v.seq as number, mac: v.mac };
    }
  } catch {
    // fall through: an unreadable anchor is itself a sign of tampering
  }
  return 'invalid';
}

/**
 * Removes keys that name secrets, at any depth. Callers should never pass secrets in the
 * first place; this is the second line. Cycles become '[circular]' rather than looping.
 */
export function stripSecrets(value: unknown, seen: WeakSet<object> = new WeakSet()): unknown {
  if (value === null || typeof value !== 'object') return value;
  if (value instanceof Date) return value;
  if (seen.has(value)) return '[circular]';
  seen.add(value);
  let out: unknown;
  if (Array.isArray(value)) {
    out = value.map((v) => stripSecrets(v, seen));
  } else {
    const obj: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      if (!SECRET_KEYS.has(k.toLowerCase())) obj[k] = stripSecrets(v, seen);
    }
    out = obj;
  }
  seen.delete(value);
  return out;
}

/** JSON with object keys sorted at every level, so the same entry always yields the same bytes. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (value instanceof Date) return JSON.stringify(value.toISOString());
  if (Array.isArray(value)) return `[${value.map((v) => (v === undefined ? 'null' : canonicalJson(v))).join(',')}]`;
  const obj = value as Record<string, unknown>;
  const parts = Object.keys(obj)
    .filter((k) => obj[k] !== undefined)
    .sort()
    .map((k) => `${JSON.stringify(k)}:${canonicalJson(obj[k])}`);
  return `{${parts.join(',')}}`;
}
