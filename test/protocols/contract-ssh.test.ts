/**
 * The SSH door against the conformance suite, with the stock OpenSSH client (password or
 * ticket typed through SSH_ASKPASS, as the other SSH tests do) and a real sshd target (one
 * per file). A live session is a remote `sh` reading commands from the client's stdin. Target
 * logins are sshd's own `Accepted ... for USER` log lines (LogLevel VERBOSE).
 */
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { silentLogger } from '../../src/core/log.js';
import { SshAdapter } from '../../protocols/ssh/index.js';
import { startSshd, type SshdTarget } from '../targets/index.js';
import { doorContract } from './contract.js';
import { refusalCodeIn, startContractGateway, within, type Closed, type DoorDriver } from './contract-driver.js';
import { run, type SshChild } from './ssh-fixture.js';

let target: SshdTarget;
let dir: string;
beforeAll(async () => {
  target = await startSshd();
  dir = mkdtempSync(join(tmpdir(), 'gh-contract-ssh-'));
});
afterAll(async () => {
  await target?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

interface SshConn {
  child: SshChild;
  rounds: number;
}

let askpassN = 0;
/** Env that makes OpenSSH answer the password prompt with `secret`. */
function askpass(secret: string): NodeJS.ProcessEnv {
  const file = join(dir, `askpass-${++askpassN}.sh`);
  writeFileSync(file, `#!/bin/sh\nprintf '%s\\n' '${secret.replace(/'/g, '')}'\n`);
  chmodSync(file, 0o755);
  return { SSH_ASKPASS: file, SSH_ASKPASS_REQUIRE: 'force', DISPLAY: ':0' };
}

const READY = 'gh-contract-ready';

async function sshDriver(): Promise<DoorDriver<SshConn>> {
  const { gw, auth, stop } = await startContractGateway();
  const listener = await new SshAdapter().listen({
    host: '127.0.0.1', port: 0, broker: gw.broker, log: silentLogger,
    tls: { cert: gw.pki.certPem, key: gw.pki.keyPem, ca: gw.pki.caCertPem }, sshHostKey: gw.pki.sshHostKeyPem,
  });
  const port = listener.address.port;
  const children = new Set<SshChild>();
  const accepted = new RegExp(`Accepted \\S+ for ${target.user} from`, 'g');

  return {
    door: 'ssh',
    gw,
    auth,
    teardownWire: 'exit 255',
    bogusPin: 'SHA256:bogus',
    plainAuthFailure: 'permission_denied',
    async resource(name, settings = {}, opts = {}) {
      await gw.addResource({
        name, type: 'machine', protocol: 'ssh', host: target.host, port: opts.port ?? target.port,
        credentials: { login: target.user, privateKey: readFileSync(target.clientKey, 'utf8') }, settings,
      });
    },
    async connect(user, resource, secret) {
      const child = run('ssh', [
        '-F', '/dev/null', '-p', String(port), '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'ConnectTimeout=10',
        '-o', 'BatchMode=no', '-o', 'PubkeyAuthentication=no', '-o', 'PreferredAuthentications=password', '-o', 'NumberOfPasswordPrompts=1',
        `${user}:${resource}@127.0.0.1`, `echo ${READY}; exec sh`,
      ], { env: askpass(secret), timeoutMs: 120_000 });
      children.add(child);
      try {
        await child.waitFor(READY, 20_000);
        return { ok: true, conn: { child, rounds: 0 } };
      } catch {
        child.child.kill('SIGKILL');
        const r = await child.exited;
        const code = refusalCodeIn(r.stderr) ?? (/Permission denied/.test(r.stderr) ? 'permission_denied' : 'unknown');
        return { ok: false, code, message: `exit ${r.code}\n${r.stderr}` };
      }
    },
    async run(c) {
      const mark = `gh-contract-round-${++c.rounds}`;
      c.child.child.stdin?.write(`echo ${mark}\n`);
      await c.child.waitFor(mark, 10_000);
    },
    async waitClosed(c) {
      const r = await c.child.exited;
      return { message: r.stderr, wire: r.signal ? `signal ${r.signal}` : `exit ${r.code}`, at: r.at } satisfies Closed;
    },
    async close(c) {
      c.child.child.stdin?.end();
      await within(c.child.exited, 5_000, 'ssh to exit').catch(() => c.child.child.kill('SIGKILL'));
    },
    async targetLogins() {
      return (readFileSync(target.log, 'utf8').match(accepted) ?? []).length;
    },
    async stop() {
      for (const c of children) if (c.child.exitCode === null && c.child.signalCode === null) c.child.kill('SIGKILL');
      await Promise.all([...children].map((c) => c.exited));
      await listener.close();
      await stop();
    },
  };
}

doorContract('SSH', sshDriver);
