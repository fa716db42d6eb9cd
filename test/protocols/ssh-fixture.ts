/**
 * The SSH gateway under test: makeGateway() + SshAdapter on a loopback port, a real sshd
 * target, ed25519 keys registered for the gateway users, and helpers that run the stock
 * OpenSSH client (`ssh`, `scp`) against the gateway.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Listener } from '../../src/broker/adapter.js';
import { silentLogger } from '../../src/core/log.js';
import type { ResourceOptions, TargetCredentials, WorkflowSettings } from '../../src/core/model.js';
import { SshAdapter, type SshAdapterOptions } from '../../protocols/ssh/index.js';
import { makeGateway, type GatewayHarness } from './gateway-harness.js';
import { startSshd, type SshdTarget } from '../targets/index.js';
import { feed } from './child-input.js';

export const USERS = ['alice', 'carol', 'dave', 'mallory'] as const;
export type TestUser = (typeof USERS)[number];

export interface SshRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface SshChild {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** Resolves when the process exits, with performance.now() at exit. */
  exited: Promise<SshRun & { at: number }>;
  /** Resolves once stdout or stderr contains `text`. */
  waitFor(text: string, timeoutMs?: number): Promise<void>;
}

export interface SshFixture {
  gw: GatewayHarness;
  target: SshdTarget;
  listener: Listener;
  port: number;
  dir: string;
  key(user: TestUser): string;
  addSshResource(name: string, opts?: { settings?: WorkflowSettings | Record<string, unknown>; options?: ResourceOptions; credentials?: TargetCredentials; port?: number; host?: string }): Promise<void>;
  /** Common OpenSSH options for `user` logging in to `resource` through the gateway. */
  sshOpts(user: TestUser): string[];
  ssh(user: TestUser, resource: string, args: string[], o?: RunOptions): Promise<SshRun>;
  spawnSsh(user: TestUser, resource: string, args: string[], o?: RunOptions): SshChild;
  /**
   * The next gateway session of `resource` to go live. Call it before the client starts;
   * its `ended` resolves with the session.end audit data (the broker closes the client first
   * and writes the audit after, so a test waits on this, not on the client's exit).
   */
  nextSession(resource: string): Promise<TrackedSession>;
  /** Env that makes OpenSSH answer keyboard-interactive prompts with the content of `file`. */
  askpassEnv(answer: string, delaySeconds?: number): NodeJS.ProcessEnv;
  close(): Promise<void>;
}

export interface TrackedSession {
  id: string;
  ended: Promise<Record<string, unknown>>;
}

export interface RunOptions {
  input?: string | Buffer;
  env?: NodeJS.ProcessEnv;
  timeoutMs?: number;
  /** Extra OpenSSH options placed before the destination. */
  pre?: string[];
  batch?: boolean;
}

export async function startSshFixture(adapterOpts: SshAdapterOptions = {}): Promise<SshFixture> {
  const gw = await makeGateway();
  const target = await startSshd();
  const dir = mkdtempSync(join(tmpdir(), 'gh-ssh-'));
  const keys = new Map<string, string>();
  for (const u of USERS) {
    const file = join(dir, `${u}_ed25519`);
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', `${u}@test`, '-f', file]);
    keys.set(u, file);
    await gw.engine.directory.updateUser('admin', u, { sshKeys: [readFileSync(`${file}.pub`, 'utf8').trim()] });
  }
  const listener = await new SshAdapter(adapterOpts).listen({
    host: '127.0.0.1', port: 0, broker: gw.broker, log: silentLogger,
    tls: { cert: gw.pki.certPem, key: gw.pki.keyPem, ca: gw.pki.caCertPem }, sshHostKey: gw.pki.sshHostKeyPem,
  });
  const port = listener.address.port;
  let askpassN = 0;
  const endOf = (id: string): Promise<Record<string, unknown>> =>
    new Promise((resolve) => {
      const off = gw.bus.on('notice', (n) => {
        if (n.kind !== 'session_ended' || n.sessionId !== id) return;
        off();
        void gw.store.listAudit({ action: 'session.end', subject: id }).then((e) => resolve(e[0]?.data ?? {}));
      });
    });

  const fx: SshFixture = {
    gw, target, listener, port, dir,
    key: (u) => keys.get(u)!,
    async addSshResource(name, o = {}) {
      await gw.addResource({
        name, type: 'machine', protocol: 'ssh', host: o.host ?? target.host, port: o.port ?? target.port,
        credentials: o.credentials ?? { login: target.user, privateKey: readFileSync(target.clientKey, 'utf8') },
        ...(o.settings ? { settings: o.settings } : {}), ...(o.options ? { options: o.options } : {}),
      });
    },
    sshOpts: (u) => [
      '-F', '/dev/null', '-p', String(port), '-i', keys.get(u)!, '-o', 'IdentitiesOnly=yes', '-o', 'StrictHostKeyChecking=no',
      '-o', 'UserKnownHostsFile=/dev/null', '-o', 'ConnectTimeout=10',
    ],
    ssh(u, resource, args, o = {}) {
      const c = fx.spawnSsh(u, resource, args, o);
      return c.exited;
    },
    spawnSsh(u, resource, args, o = {}) {
      const batch = o.batch ?? true;
      const argv = [...fx.sshOpts(u), '-o', `BatchMode=${batch ? 'yes' : 'no'}`, ...(o.pre ?? []), `${u}:${resource}@127.0.0.1`, ...args];
      return run('ssh', argv, o);
    },
    nextSession(resource) {
      return new Promise((resolve) => {
        const off = gw.bus.on('notice', (n) => {
          if (n.kind !== 'session_started' || n.resource !== resource) return;
          off();
          resolve({ id: n.sessionId, ended: endOf(n.sessionId) });
        });
      });
    },
    askpassEnv(answer, delaySeconds = 0) {
      const file = join(dir, `askpass-${++askpassN}.sh`);
      writeFileSync(file, `#!/bin/sh\n${delaySeconds ? `sleep ${delaySeconds}\n` : ''}printf '%s\\n' '${answer.replace(/'/g, '')}'\n`);
      chmodSync(file, 0o755);
      return { SSH_ASKPASS: file, SSH_ASKPASS_REQUIRE: 'force', DISPLAY: ':0' };
    },
    async close() {
      await listener.close();
      await gw.cleanup();
      await target.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return fx;
}

/** Runs a client process with collected output; killed after timeoutMs (default 30 s). */
export function run(cmd: string, argv: string[], o: RunOptions = {}): SshChild {
  const child = spawn(cmd, argv, { env: { ...process.env, ...o.env }, stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  const waiters: Array<{ text: string; resolve: () => void }> = [];
  const check = (): void => {
    for (const w of [...waiters]) {
      if (out.includes(w.text) || err.includes(w.text)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve();
      }
    }
  };
  child.stdout.on('data', (b: Buffer) => {
    out += b.toString('latin1');
    check();
  });
  child.stderr.on('data', (b: Buffer) => {
    err += b.toString('latin1');
    check();
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), o.timeoutMs ?? 30_000);
  const exited = new Promise<SshRun & { at: number }>((resolve) => {
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout: out, stderr: err, at: performance.now() });
    });
  });
  if (o.input !== undefined) feed(child.stdin, o.input);
  return {
    child,
    stdout: () => out,
    stderr: () => err,
    exited,
    waitFor(text, timeoutMs = 20_000) {
      return new Promise<void>((resolve, reject) => {
        if (out.includes(text) || err.includes(text)) return resolve();
        const t = setTimeout(() => reject(new Error(`timed out waiting for ${JSON.stringify(text)}; stdout=${out} stderr=${err}`)), timeoutMs);
        waiters.push({ text, resolve: () => (clearTimeout(t), resolve()) });
        void exited.then(() => {
          clearTimeout(t);
          if (!out.includes(text) && !err.includes(text)) reject(new Error(`exited before ${JSON.stringify(text)}; stdout=${out} stderr=${err}`));
        });
      });
    },
  };
}
