/**
 * Finding 7, sign-in side: an unauthenticated client chooses the user name it sends (a
 * PostgreSQL `user=`, a MySQL login, an API sign-in). Whatever it sends, the audit log keeps
 * only printable text, so `gatehouse audit` cannot be made to rewrite a row.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AuthService } from '../../src/api/auth.js';
import { createApiServer, type ApiServer } from '../../src/api/server.js';
import { Broker } from '../../src/broker/broker.js';
import { silentLogger } from '../../src/core/log.js';
import { makeHarness, seed, type Harness } from '../unit/workflow/harness.js';

// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/;
/** Every string inside a value (JSON.stringify would escape the very characters looked for). */
const strings = (v: unknown): string[] =>
  typeof v === 'string' ? [v] : v && typeof v === 'object' ? Object.values(v).flatMap(strings) : [];

const EVIL = 'x\u001b[2K\r2026-01-01 admin user.create root\u001b]52;c;cm0gLXJmIC8=\u0007';

describe('control characters in sign-in names never reach the audit log', () => {
  let h: Harness;
  let api: ApiServer;
  let base: string;
  beforeEach(async () => {
    h = makeHarness();
    await seed(h, {});
    api = createApiServer({ engine: h.engine, auth: new AuthService(h.engine), log: silentLogger, listeners: {}, sessions: { kill: async () => false } });
    base = `http://127.0.0.1:${(await api.listen('127.0.0.1', 0)).port}`;
  });
  afterEach(async () => {
    await api.close();
    await h.store.close();
  });

  it('a database login name carrying terminal escapes is refused and audited as printable text', async () => {
    const port = new Broker({ engine: h.engine, log: silentLogger, node: 't' }).portFor({ protocol: 'postgres', loginExample: '' });
    for (const name of [EVIL, `${EVIL}:prod-pg`, `alice:${EVIL}`]) {
      expect(await port.login({ name, secret: { kind: 'password', value: 'x' }, client: '192.0.2.1:1' })).toMatchObject({ ok: false, code: 'bad_login_name' });
    }
    const rows = await h.store.listAudit({ action: 'login.refuse' });
    expect(rows).toHaveLength(3);
    for (const r of rows) for (const text of strings([r.actor, r.subject, r.data])) expect(text).not.toMatch(CONTROL);
  });

  it('an API sign-in with terminal escapes in the user name is refused and audited as printable text', async () => {
    const res = await fetch(`${base}/api/v1/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ user: EVIL, password: 'x' }) });
    expect(res.status).toBe(401);
    const rows = await h.store.listAudit({ action: 'auth.fail' });
    expect(rows).toHaveLength(1);
    expect(rows[0]!.actor).toContain('x?[2K?2026-01-01 admin');
    for (const r of rows) for (const text of strings([r.actor, r.subject, r.data])) expect(text).not.toMatch(CONTROL);
  });
});
