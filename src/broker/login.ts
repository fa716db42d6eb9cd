/**
 * The one sign-in path every door uses: the login name `USER:RESOURCE`, then a launch ticket,
 * the user's gateway password or a registered SSH key. Name parsing, ticket-or-password,
 * lockout, per-source throttling and the audit of every refusal live here once, so no two
 * doors can drift apart on a security-relevant step.
 */
import { SECOND, type Clock } from '../core/clock.js';
import { isGatehouseError } from '../core/errors.js';
import { FailureTracker, RateLimiter } from '../core/limits.js';
import type { Protocol } from '../core/model.js';
import { hashPassword, verifyPassword } from '../secrets/passwords.js';
import type { MfaProof } from '../workflow/decide.js';
import { NAME_RE } from '../workflow/directory.js';
import type { Engine } from '../workflow/engine.js';
import { looksLikeTicket } from '../workflow/mfa.js';
import { AuditFolding } from './audit-folding.js';
import { VerifiedPasswords } from './password-cache.js';
import { printable, refusals, type LoginRefusalCode, type Refusal } from './refusals.js';

export interface LoginName {
  user: string;
  resource: string;
}

/** `alice:prod-pg` → { user: 'alice', resource: 'prod-pg' }; undefined unless both are valid names. */
export function parseLoginName(name: string): LoginName | undefined {
  const i = name.indexOf(':');
  if (i <= 0) return undefined;
  const user = name.slice(0, i);
  const resource = name.slice(i + 1);
  if (!NAME_RE.test(user) || !NAME_RE.test(resource)) return undefined;
  return { user, resource };
}

export type LoginSecret =
  /** What the client typed: a launch ticket or the gateway password. */
  | { kind: 'password'; value: string }
  /** A public key the door has checked the signature of (`signatureValid`). */
  | { kind: 'publickey'; keyType: string; keyBase64: string; signatureValid: boolean };

export interface LoginRequest {
  protocol: Protocol;
  /** `USER:RESOURCE` as the client sent it. */
  name: string;
  secret: LoginSecret;
  /** The client's address (`ip:port`), for throttling and the audit. */
  client: string;
  /** How the door's users log in, shown when the name is malformed. */
  example?: string;
}

export type LoginVia = 'ticket' | 'password' | 'publickey';

export type LoginResult =
  | { ok: true; user: string; resource: string; mfa: MfaProof; via: LoginVia }
  | { ok: false; code: LoginRefusalCode | 'wrong_protocol' | 'gateway_unavailable'; refusal: Refusal };

export interface LoginOptions {
  /** Failed sign-ins, shared with the API so a lockout holds on every door. */
  failures?: FailureTracker;
  /** How long a verified gateway password is remembered (a pool pays scrypt once). */
  passwordCacheMs?: number;
  /**
   * Password checks (scrypt) one address may cause: `rate` per second, bursting to `burst`.
   * A password the cache already verified costs nothing and is not throttled, so a pool or a
   * connection-per-transaction client is never slowed by it.
   */
  throttle?: { rate: number; burst: number };
}

/** The address part of `ip:port` / `[v6]:port`. */
export function sourceOf(client: string): string {
  const m = /^\[(.*)\]:\d+$/.exec(client) ?? /^(.*):\d+$/.exec(client);
  return m ? m[1]! : client;
}

/** Refusals that were a wrong guess at a secret: they count towards the lockout. */
const GUESSES: ReadonlySet<string> = new Set<LoginRefusalCode>(['bad_password', 'bad_key', 'bad_ticket', 'ticket_other_user', 'ticket_other_resource']);

/** A hash for unknown users, so an unknown name costs the same scrypt as a known one. */
let dummyHash: Promise<string> | undefined;

export class LoginService {
  readonly failures: FailureTracker;
  private readonly passwords: VerifiedPasswords;
  private readonly throttle: RateLimiter;
  private readonly folding: AuditFolding;

  constructor(
    private readonly engine: Engine,
    opts: LoginOptions = {},
  ) {
    const clock: Clock = engine.ctx.clock;
    this.failures = opts.failures ?? new FailureTracker(clock, { maxFailures: 5, windowMs: 15 * 60 * SECOND, lockMs: 15 * 60 * SECOND });
    this.passwords = new VerifiedPasswords(clock, opts.passwordCacheMs ?? 60 * SECOND);
    const t = opts.throttle ?? { rate: 20, burst: 60 };
    this.throttle = new RateLimiter(clock, { rate: t.rate, perMs: SECOND, burst: t.burst });
    this.folding = new AuditFolding(clock);
  }

  async login(req: LoginRequest): Promise<LoginResult> {
    const source = sourceOf(req.client);
    const who = parseLoginName(req.name);
    if (!who) return this.refuse(req, printable(req.name, 64), '', refusals.badLoginName(req.name, req.example ?? 'USER:RESOURCE'));
    const { user, resource } = who;
    // The guess is reserved before the slow check: concurrent guesses cannot all slip past the limit.
    const reserved = await this.failures.attempt([`user:${user}`, `ip:${source}`]);
    if (!reserved.ok) return this.refuse(req, user, resource, refusals.locked(Math.ceil(reserved.retryAfterMs / 60_000)));
    const guess = reserved.attempt;
    try {
      const r = await this.check(req, user, resource);
      if (r.ok) guess.succeed([`user:${user}`]);
      else if (GUESSES.has(r.code)) guess.fail();
      else guess.cancel();
      return r;
    } catch (err) {
      guess.cancel();
      // The store is unreachable: fail closed with the reason a person can act on, as the decision does.
      if (isGatehouseError(err) && err.code === 'STORE_FAILURE') {
        this.engine.ctx.log.error({ err, door: req.protocol, client: req.client }, 'sign-in could not read the store; refusing');
        return { ok: false, code: 'gateway_unavailable', refusal: refusals.fromDenial({ code: 'gateway_unavailable', message: 'The gateway could not check your access right now; try again shortly.' }) };
      }
      throw err;
    }
  }

  private async check(req: LoginRequest, user: string, resource: string): Promise<LoginResult> {
    const secret = req.secret;
    switch (secret.kind) {
      case 'publickey': {
        const ok = secret.signatureValid && (await this.hasKey(user, secret.keyType, secret.keyBase64));
        if (!ok) return this.refuse(req, user, resource, refusals.badKey(user));
        return { ok: true, user, resource, mfa: { kind: 'none' }, via: 'publickey' };
      }
      case 'password': {
        if (secret.value === '') return this.refuse(req, user, resource, refusals.noSecret(resource));
        if (looksLikeTicket(secret.value)) return this.redeem(req, user, resource, secret.value);
        let throttled = false;
        const ok = await this.passwords.check(user, secret.value, async () => {
          if (this.throttle.take(`ip:${sourceOf(req.client)}`)) return this.checkPassword(user, secret.value);
          throttled = true;
          return false;
        });
        if (throttled) return this.refuse(req, user, resource, refusals.throttled());
        if (!ok) return this.refuse(req, user, resource, refusals.badPassword(user, resource));
        return { ok: true, user, resource, mfa: { kind: 'none' }, via: 'password' };
      }
      default: {
        const never: never = secret;
        throw new Error(`unknown login secret ${JSON.stringify(never)}`);
      }
    }
  }

  /**
   * Guards the decision of a connection: a locked user or source is refused whatever the
   * sign-in method, and a TOTP code typed at connection start (SSH keyboard-interactive) is a
   * guess like a password — reserved before it is checked, counted when wrong.
   */
  async guardDecision<T extends { ok: boolean }>(
    req: { protocol: Protocol; user: string; resource: string; client: string; totp: boolean },
    decide: () => Promise<T>, wrongTotp: (r: T) => boolean,
  ): Promise<T | { ok: false; refusal: Refusal }> {
    const keys = [`user:${req.user}`, `ip:${sourceOf(req.client)}`];
    const reserved = await this.failures.attempt(req.totp ? keys : []);
    const locked = Math.max(...keys.map((k) => this.failures.lockedFor(k)), reserved.ok ? 0 : reserved.retryAfterMs);
    if (locked > 0 || !reserved.ok) {
      if (reserved.ok) reserved.attempt.cancel();
      const refusal = refusals.locked(Math.ceil(locked / 60_000));
      await this.audit(req.protocol, req.client, req.user, req.resource, 'locked', req.totp ? 'totp' : 'decision', {});
      return { ok: false, refusal };
    }
    try {
      const r = await decide();
      if (!req.totp) reserved.attempt.cancel();
      else if (r.ok) reserved.attempt.succeed([keys[0]!]);
      else if (wrongTotp(r)) reserved.attempt.fail();
      else reserved.attempt.cancel();
      return r;
    } catch (err) {
      reserved.attempt.cancel();
      throw err;
    }
  }

  /**
   * What a door can tell before any secret: a malformed login name, or a locked user or
   * address. Nothing is counted or used up (an SSH client that only offers keys would
   * otherwise never hear why it is refused). The door audits the refusal it acts on.
   */
  precheck(name: string, client: string, example = 'USER:RESOURCE'): Refusal | undefined {
    const who = parseLoginName(name);
    if (!who) return refusals.badLoginName(name, example);
    const locked = Math.max(this.failures.lockedFor(`user:${who.user}`), this.failures.lockedFor(`ip:${sourceOf(client)}`));
    return locked > 0 ? refusals.locked(Math.ceil(locked / 60_000)) : undefined;
  }

  /** Whether a key is registered for the user of `name` (an SSH key probe: nothing is counted). */
  async knowsKey(name: string, client: string, keyType: string, keyBase64: string): Promise<boolean> {
    const who = parseLoginName(name);
    if (!who) return false;
    if (this.failures.lockedFor(`user:${who.user}`) > 0 || this.failures.lockedFor(`ip:${sourceOf(client)}`) > 0) return false;
    return this.hasKey(who.user, keyType, keyBase64);
  }

  private async redeem(req: LoginRequest, user: string, resource: string, ticket: string): Promise<LoginResult> {
    const mfa = this.engine.mfa;
    // The protocol is checked before the ticket is used up: a ticket for a PostgreSQL
    // resource typed into the SSH door stays valid for psql.
    const peek = await mfa.peekTicket(ticket);
    if (peek && peek.user === user && peek.resource === resource) {
      const r = await this.engine.ctx.store.getResource(resource);
      if (r && r.protocol !== req.protocol) {
        const d = refusals.fromDenial({
          code: 'wrong_protocol', message: `${resource} is a ${r.protocol} resource and cannot be reached through the ${req.protocol} gateway.`,
          hint: `gatehouse connect ${resource}`,
        });
        return this.refuse(req, user, resource, d, 'wrong_protocol');
      }
    }
    const t = await mfa.redeemTicketFor(ticket, user, resource);
    if (t.ok) return { ok: true, user, resource, mfa: t.ticket.mfa ? { kind: 'verified', at: t.ticket.createdAt } : { kind: 'none' }, via: 'ticket' };
    switch (t.why) {
      case 'unknown':
      case 'used':
      case 'expired':
        return this.refuse(req, user, resource, refusals.badTicket(resource), 'bad_ticket', { ticket: t.why });
      case 'other_user':
        return this.refuse(req, user, resource, refusals.ticketOtherUser(user, resource), 'ticket_other_user', { owner: t.owner });
      case 'other_resource':
        return this.refuse(req, user, resource, refusals.ticketOtherResource(resource, t.boundTo), 'ticket_other_resource', { boundTo: t.boundTo });
      default: {
        const never: never = t;
        throw new Error(`unknown ticket outcome ${JSON.stringify(never)}`);
      }
    }
  }

  private async checkPassword(user: string, password: string): Promise<boolean> {
    const u = await this.engine.ctx.store.getUser(user);
    dummyHash ??= hashPassword('gatehouse-unknown-user');
    // Unknown and disabled users cost the same scrypt as known ones: timing tells nothing.
    const ok = await verifyPassword(password, u?.passwordHash ?? (await dummyHash));
    return ok && !!u && !u.disabled && !!u.passwordHash;
  }

  private async hasKey(user: string, keyType: string, keyBase64: string): Promise<boolean> {
    const u = await this.engine.ctx.store.getUser(user);
    if (!u || u.disabled) return false;
    return u.sshKeys.some((line) => {
      const [t, b] = line.trim().split(/\s+/);
      return t === keyType && b === keyBase64;
    });
  }

  private async refuse(
    req: LoginRequest, user: string, resource: string, refusal: Refusal,
    code: LoginRefusalCode | 'wrong_protocol' = refusal.code as LoginRefusalCode, detail: Record<string, string> = {},
  ): Promise<LoginResult> {
    await this.audit(req.protocol, req.client, user, resource, code, req.secret.kind, detail);
    return { ok: false, code, refusal };
  }

  private async audit(door: Protocol, client: string, user: string, resource: string, code: string, method: string, detail: Record<string, string>): Promise<void> {
    // A flood from one address (unknown names, a locked account hammered) is summarised: the
    // next row written for that address and code carries how many were folded into it.
    const extra = this.folding.admit(`${sourceOf(client)}\0${code}`);
    if (!extra) return;
    await this.engine.ctx.audit
      .record(user || 'unknown', 'login.refuse', resource, { door, client, code, method, ...detail, ...extra })
      .catch((err: unknown) => this.engine.ctx.log.error({ err }, 'could not audit a refused sign-in'));
  }
}
