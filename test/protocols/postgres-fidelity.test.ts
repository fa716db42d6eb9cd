/**
 * Wire fidelity of the PostgreSQL door where a client library is picky about how a server
 * ends a connection it has barely opened.
 */
import { spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startPgGateway, type PgGateway } from './postgres-harness.js';

let g: PgGateway;
beforeAll(async () => {
  g = await startPgGateway({ allowPlaintext: true });
});
afterAll(async () => {
  await g?.close();
});

/**
 * Runs node-postgres in its own process, the way an application that changes its mind does:
 * connect() without a handler, then end() at once. An unhandled error there is a crash.
 */
function connectThenEnd(config: object): Promise<{ status: number | null; stderr: string; stdout: string }> {
  const script = `
    const pg = require('pg');
    const c = new pg.Client(JSON.parse(process.env.CFG));
    c.connect();
    c.end().then(() => console.log('ended'), (e) => console.log('end failed: ' + e.message));
  `;
  // Not spawnSync: the gateway under test runs in this process and must keep answering.
  const child = spawn(process.execPath, ['-e', script], { env: { ...process.env, CFG: JSON.stringify(config) }, cwd: process.cwd() });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve) => child.once('close', (status) => resolve({ status, stdout, stderr })));
}

describe('node-postgres through the PostgreSQL door', () => {
  for (const [name, tls] of [['over TLS', true], ['in plaintext', false]] as const) {
    it(`connect() then end() at once does not crash the client process (${name})`, async () => {
      // 127.0.0.1, not localhost: node-postgres tries only the first address a name resolves to.
      const base = { ...g.pgConfig('alice:open-pg', 'whatever'), host: '127.0.0.1' };
      const r = await connectThenEnd(tls ? { ...base, ssl: { ...(base.ssl as object), servername: 'localhost' } } : { ...base, ssl: false });
      expect(r.stderr).not.toMatch(/Unhandled|Error:/);
      expect(r.status).toBe(0);
      expect(r.stdout).toContain('ended');
    });
  }
});
