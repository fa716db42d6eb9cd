import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { RequestView } from '../../../src/api/wire.js';
import { CliError } from '../../../src/cli/cli-error.js';
import { ApiClient } from '../../../src/cli/client.js';
import { waitForDecision } from '../../../src/cli/wait.js';
import { ensurePki, type Pki } from '../../../src/pki/pki.js';
import { CliHarness, FakeApi } from './harness.js';

let certDir: string;
let pki: Pki;
let api: FakeApi;

beforeAll(async () => {
  certDir = mkdtempSync(join(tmpdir(), 'gatehouse-cli-pki-'));
  pki = await ensurePki(certDir);
});

afterAll(() => rmSync(certDir, { recursive: true, force: true }));

beforeEach(async () => {
  api = await new FakeApi({ cert: pki.certPem, key: pki.keyPem }).start();
  api.on('GET /me', { body: { name: 'alice', admin: false, teams: [], mfaEnrolled: false, canConfigureWorkflow: false } });
});

afterEach(async () => {
  await api.stop();
});

describe('HTTPS against the gateway CA', () => {
  it('refuses an untrusted gateway certificate and says how to trust it', async () => {
    const err = await new ApiClient({ server: api.url, token: 't' }).get('/me').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CliError);
    expect((err as CliError).code).toBe('NETWORK');
    expect((err as CliError).message).toMatch(/^cannot reach the gateway at https:\/\/127\.0\.0\.1:\d+: .*\(trust the gateway CA with --ca FILE or GATEHOUSE_CA\)$/);
  });

  it('trusts the CA it is given', async () => {
    const me = await new ApiClient({ server: api.url, token: 't', caPem: pki.caCertPem }).get<{ name: string }>('/me');
    expect(me.name).toBe('alice');
    expect(api.calls[0]!.headers.authorization).toBe('Bearer t');
  });

  it('follows a request over wss:// with the same CA', async () => {
    const pending = { id: 'r1', resource: 'db', requester: 'alice', state: 'approved', stage: 0, reviews: [], createdAt: '', pendingUntil: '', version: 1 };
    api.on('GET /requests/r1', { body: pending });
    const client = new ApiClient({ server: api.url, token: 't', caPem: pki.caCertPem });
    const final: RequestView = await waitForDecision({ client, requestId: 'r1', onUpdate: () => {} });
    expect(final.state).toBe('approved');
  });

  it('takes the CA from --ca or GATEHOUSE_CA on the command line', async () => {
    const cli = new CliHarness();
    try {
      cli.env.GATEHOUSE_TOKEN = 't';
      const flag = await cli.run(['whoami', '--server', api.url, '--ca', pki.caPath]);
      expect(flag).toMatchObject({ code: 0, stderr: '' });
      expect(flag.stdout).toMatch(/^alice on https:/);
      const env = await cli.run(['whoami', '--server', api.url], { env: { GATEHOUSE_CA: pki.caPath } });
      expect(env.code).toBe(0);
      const none = await cli.run(['whoami', '--server', api.url]);
      expect(none.code).toBe(1);
      const bad = await cli.run(['whoami', '--server', api.url, '--ca', join(certDir, 'missing.pem')]);
      expect(bad.stderr).toMatch(/^gatehouse: cannot use CA file .*missing\.pem: ENOENT/);
    } finally {
      cli.cleanup();
    }
  });
});
