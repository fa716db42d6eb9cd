import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { HOUR } from '../core/clock.js';
import { ForbiddenError, GatehouseError, NotFoundError, ValidationError } from '../core/errors.js';
import type { ApiToken, User } from '../core/model.js';
import { hashPassword, verifyPassword } from '../secrets/passwords.js';
import type { Engine } from '../workflow/engine.js';
import { hashSecretToken } from '../workflow/mfa.js';
import type { AuthService } from './auth.js';
import type { SshKeyView } from './wire.js';

export const DAY = 24 * HOUR;
/** How long an API token lives when its creator names no lifetime, and the longest it may live. */
export const DEFAULT_API_TOKEN_TTL_MS = 90 * DAY;

/** Why tokens stopped being valid; the WebSocket close reason says it in words. */
export type RevocationReason = 'signed_out' | 'revoked' | 'password_changed';

export interface Revocation {
  user: string;
  tokenIds: string[];
  reason: RevocationReason;
}

/** A token as its owner sees it: never the token or its hash. */
export interface TokenView {
  id: string;
  kind: ApiToken['kind'];
  label?: string;
  createdAt: Date;
  expiresAt?: Date;
  /** The token this request was made with. */
  current: boolean;
}

/** One registered key as the API shows it (the wire type the CLI and the vault read). */
export type { SshKeyView } from './wire.js';

const SSH_KEY_RE = /^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com|sk-ecdsa-sha2-nistp256@openssh\.com) ([A-Za-z0-9+/]+={0,2})( .*)?$/;

const FINGERPRINT_RE = /^(SHA256:)?[A-Za-z0-9+/]{43}$/;

/** OpenSSH's `SHA256:` fingerprint (`ssh-keygen -l`): the key blob's SHA-256, base64 without padding. */
export function sshKeyFingerprint(publicKey: string): string {
  const blob = Buffer.from(publicKey.trim().split(/\s+/)[1] ?? '', 'base64');
  return `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`;
}

export function sshKeyView(publicKey: string): SshKeyView {
  const [type = '', , ...rest] = publicKey.trim().split(/\s+/);
  const comment = rest.join(' ');
  return { fingerprint: sshKeyFingerprint(publicKey), type, ...(comment ? { comment } : {}), publicKey };
}

/**
 * What users do to their own credentials: API tokens (lifetime, listing, revocation), SSH
 * keys (add, list, remove) and the password (the old one or admin rights to change it; a
 * change revokes every other token of the user). Revocations are announced so the open
 * WebSockets of those tokens close at once (src/api/ws.ts).
 */
export class CredentialService {
  private readonly revoked = new EventEmitter();
  readonly apiTokenTtlMs: number;

  constructor(
    private readonly engine: Engine,
    private readonly auth: AuthService,
    opts: { apiTokenTtlMs?: number } = {},
  ) {
    this.apiTokenTtlMs = opts.apiTokenTtlMs ?? DEFAULT_API_TOKEN_TTL_MS;
    if (!(this.apiTokenTtlMs >= DAY)) throw new GatehouseError('CONFIG_INVALID', 'apiTokenTtlDays: must be at least 1 day');
    this.revoked.setMaxListeners(0);
  }

  private get store() {
    return this.engine.ctx.store;
  }

  /** Calls fn after tokens were revoked here; returns the unsubscribe function. */
  onRevoked(fn: (r: Revocation) => void): () => void {
    const safe = (r: Revocation): void => {
      try {
        fn(r);
      } catch {
        // A listener's failure is its own; the revocation already happened.
      }
    };
    this.revoked.on('revoked', safe);
    return () => this.revoked.off('revoked', safe);
  }

  // --- API tokens ---

  /** An API token for automation; it expires after `ttlDays`, or after the gateway's token lifetime. */
  async createApiToken(user: string, label: string, ttlDays?: number): Promise<{ id: string; token: string; expiresAt?: Date }> {
    const maxDays = Math.floor(this.apiTokenTtlMs / DAY);
    if (ttlDays !== undefined && ttlDays > maxDays) {
      throw new ValidationError('ttlDays', `API tokens on this gateway live at most ${maxDays} days`);
    }
    const t = await this.auth.issue(user, 'api', ttlDays !== undefined ? ttlDays * DAY : this.apiTokenTtlMs, label);
    await this.engine.ctx.audit.record(user, 'token.create', t.id, { label, expiresAt: t.expiresAt });
    return t;
  }

  /** When a token stops being valid on its own; undefined for a token without expiry (or none at all). */
  async tokenExpiry(token: string): Promise<Date | undefined> {
    return (await this.store.getTokenByHash(hashSecretToken(token)))?.expiresAt;
  }

  /** The user's sessions and API tokens that are still valid, oldest first. */
  async listTokens(user: string, currentId?: string): Promise<TokenView[]> {
    const now = this.engine.ctx.clock.now();
    return (await this.store.listTokens(user))
      .filter((t) => !t.expiresAt || t.expiresAt > now)
      .map((t) => ({
        id: t.id, kind: t.kind, ...(t.label ? { label: t.label } : {}), createdAt: t.createdAt,
        ...(t.expiresAt ? { expiresAt: t.expiresAt } : {}), current: t.id === currentId,
      }));
  }

  /** Revokes one of the user's own tokens. Someone else's token is NOT_FOUND, as an unknown one. */
  async revokeToken(user: string, id: string, reason: RevocationReason = 'revoked'): Promise<void> {
    const mine = (await this.store.listTokens(user)).find((t) => t.id === id);
    if (!mine) throw new NotFoundError('token', id);
    await this.store.deleteToken(id);
    await this.engine.ctx.audit.record(user, reason === 'signed_out' ? 'auth.logout' : 'token.revoke', id, { kind: mine.kind, ...(mine.label ? { label: mine.label } : {}) });
    this.revoked.emit('revoked', { user, tokenIds: [id], reason } satisfies Revocation);
  }

  /** Revokes every token of the user but `keep`; returns how many went. */
  async revokeAllOf(actor: string, user: string, reason: RevocationReason, keep?: string): Promise<number> {
    const gone: string[] = [];
    for (const t of await this.store.listTokens(user)) {
      if (t.id === keep) continue;
      if (await this.store.deleteToken(t.id)) gone.push(t.id);
    }
    if (gone.length > 0) {
      await this.engine.ctx.audit.record(actor, 'token.revoke_all', user, { count: gone.length, reason });
      this.revoked.emit('revoked', { user, tokenIds: gone, reason } satisfies Revocation);
    }
    return gone.length;
  }

  // --- password ---

  /**
   * Sets `target`'s password. Your own password needs the current one (a stolen session must
   * not become a permanent takeover); an administrator resets someone else's without it.
   * Every other token of the target is revoked: the caller's own token stays valid.
   */
  async changePassword(caller: User, callerTokenId: string | undefined, target: string, password: string, oldPassword: string | undefined): Promise<{ revokedTokens: number }> {
    const own = caller.name === target;
    if (!own && !caller.admin) throw new ForbiddenError("only an administrator can set another user's password");
    const user = await this.engine.directory.requireUser(target);
    if (own) {
      if (oldPassword === undefined) throw new ValidationError('oldPassword', 'give your current password to change it');
      await this.checkCurrentPassword(user, oldPassword);
    }
    await this.engine.directory.updateUser(caller.name, target, { passwordHash: await hashPassword(password) }, 'user.set_password');
    const revokedTokens = await this.revokeAllOf(caller.name, target, 'password_changed', own ? callerTokenId : undefined);
    return { revokedTokens };
  }

  /** A wrong current password counts against the user's sign-in lockout, as a wrong sign-in does. */
  private async checkCurrentPassword(user: User, oldPassword: string): Promise<void> {
    // Awaited: the tracker's reservation may wait for checks already under way on this user.
    const reserved = await this.auth.failures.attempt([`user:${user.name}`]);
    if (!reserved.ok) {
      const wait = reserved.retryAfterMs;
      throw new GatehouseError('LOCKED', `too many wrong passwords; try again in ${Math.ceil(wait / 60_000)} min`, { retryAfterSeconds: Math.ceil(wait / 1000) });
    }
    let ok = false;
    try {
      ok = user.passwordHash !== undefined && (await verifyPassword(oldPassword, user.passwordHash));
    } finally {
      if (ok) reserved.attempt.succeed();
      else reserved.attempt.fail();
    }
    if (!ok) {
      await this.engine.ctx.audit.record(user.name, 'auth.fail', user.name, { why: 'old_password', door: 'api' });
      throw new GatehouseError('FORBIDDEN', 'the current password is wrong', { field: 'oldPassword' });
    }
  }

  // --- SSH keys ---

  async listKeys(user: string): Promise<SshKeyView[]> {
    return (await this.engine.directory.requireUser(user)).sshKeys.map(sshKeyView);
  }

  async addKey(user: string, publicKey: string): Promise<SshKeyView[]> {
    const key = publicKey.trim();
    if (!SSH_KEY_RE.test(key)) throw new ValidationError('publicKey', 'not an OpenSSH public key line');
    const u = await this.engine.directory.requireUser(user);
    const fingerprint = sshKeyFingerprint(key);
    if (!u.sshKeys.some((k) => sshKeyFingerprint(k) === fingerprint)) {
      await this.store.putUser({ ...u, sshKeys: [...u.sshKeys, key] });
      await this.engine.ctx.audit.record(user, 'key.add', user, { fingerprint });
    }
    return this.listKeys(user);
  }

  /** Removes the key with that fingerprint (`SHA256:...`, the prefix optional); the SSH door stops accepting it at once. */
  async removeKey(user: string, fingerprint: string): Promise<SshKeyView> {
    if (!FINGERPRINT_RE.test(fingerprint)) throw new ValidationError('fingerprint', 'not an SSH key fingerprint (SHA256:... as gatehouse key list shows it)');
    const want = fingerprint.startsWith('SHA256:') ? fingerprint : `SHA256:${fingerprint}`;
    const u = await this.engine.directory.requireUser(user);
    const key = u.sshKeys.find((k) => sshKeyFingerprint(k) === want);
    if (!key) throw new GatehouseError('NOT_FOUND', `you have no SSH key with fingerprint ${want}; see gatehouse key list`, { kind: 'key', name: want });
    await this.store.putUser({ ...u, sshKeys: u.sshKeys.filter((k) => k !== key) });
    await this.engine.ctx.audit.record(user, 'key.remove', user, { fingerprint: want });
    return sshKeyView(key);
  }
}
