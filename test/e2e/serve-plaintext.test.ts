/**
 * `gatehouse serve --allow-plaintext-on-loopback`: the flag that local tools and tests use
 * instead of a config file, and that never opens a listener off loopback to plaintext.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';

const ROOT = resolve(import.meta.dirname, '../..');
const BIN = join(ROOT, 'bin', 'gatehouse.js');

function serve(dir: string, extra: string[]): Promise<{ child: ChildProcess; out: string; port: (name: string) => number }> {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('GATEHOUSE_')) env[k] = v;
  const child = spawn(process.execPath, [BIN, 'serve', '--data', join(dir, 'data'), '--listen', 'api=127.0.0.1:0', '--listen', 'ssh=off',
    '--listen', 'postgres=127.0.0.1:0', '--listen', 'mysql=127.0.0.1:0', ...extra], { cwd: dir, env });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  return new Promise((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`serve did not start:\n${out}`)), 60_000);
    child.once('exit', (code) => rej(new Error(`serve exited ${code}:\n${out}`)));
    child.stdout!.on('data', () => {
      if (!out.includes('gateway CA:')) return;
      clearTimeout(timer);
      res({ child, get out() { return out; }, port: (name) => Number(new RegExp(`listening ${name} \\w+://127\\.0\\.0\\.1:(\\d+)`).exec(out)![1]) });
    });
  });
}

describe('gatehouse serve --allow-plaintext-on-loopback', () => {
  let dir: string;
  let child: ChildProcess | undefined;
  afterEach(async () => {
    if (child && child.exitCode === null) {
      const exited = new Promise((r) => child!.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    }
    rmSync(dir, { recursive: true, force: true });
  });

  const psql = (port: number) => spawnSync('psql', [`host=127.0.0.1 port=${port} user=admin:prod-pg dbname=prod-pg sslmode=disable`, '-c', 'select 1'], {
    encoding: 'utf8', timeout: 30_000, env: { ...process.env, PGPASSWORD: 'not-the-password', PGCONNECT_TIMEOUT: '10' },
  });

  it('without the flag a plaintext psql is refused with the TLS hint; with it, the door asks for the password', async () => {
    expect(existsSync(join(ROOT, 'dist'))).toBe(true);
    dir = mkdtempSync(join(tmpdir(), 'gh-plain-'));
    let s = await serve(dir, []);
    child = s.child;
    expect(s.out).not.toContain('plaintext clients allowed');
    const refused = psql(s.port('postgres'));
    expect(refused.stderr).toContain('Gatehouse: this gateway accepts only TLS connections.');
    const exited = new Promise((r) => s.child.once('exit', r));
    s.child.kill('SIGTERM');
    await exited;

    // A listener off loopback stays TLS-only whatever the flag says (the later --listen wins).
    s = await serve(dir, ['--allow-plaintext-on-loopback', '--listen', 'mysql=0.0.0.0:0']);
    child = s.child;
    expect(s.out).toContain('plaintext clients allowed on loopback listeners: postgres, ldap (TLS only, not on loopback: mysql)');
    const asked = psql(s.port('postgres'));
    expect(asked.stderr).not.toContain('accepts only TLS');
    expect(asked.stderr).toContain('(bad_password)');
  });

  it('--workers 2 serves the PostgreSQL and MySQL doors from two worker processes of the built package, which end with serve', async () => {
    dir = mkdtempSync(join(tmpdir(), 'gh-workers-'));
    const s = await serve(dir, ['--workers', '2']);
    child = s.child;
    const workers = (): number[] => spawnSync('ps', ['-o', 'pid=,args=', '--ppid', String(s.child.pid)], { encoding: 'utf8' }).stdout
      .split('\n').filter((l) => l.includes(join('dist', 'src', 'dataplane', 'worker.js'))).map((l) => Number(l.trim().split(/\s+/)[0]));
    expect(workers()).toHaveLength(2);
    // The refusals come from the door's code in a worker: the same words as in one process.
    for (let i = 0; i < 2; i++) expect(psql(s.port('postgres')).stderr).toContain('Gatehouse: this gateway accepts only TLS connections.');
    const pids = workers();
    const exited = new Promise((r) => s.child.once('exit', r));
    s.child.kill('SIGTERM');
    await exited;
    const alive = (pid: number): boolean => spawnSync('kill', ['-0', String(pid)]).status === 0;
    await vi.waitFor(() => expect(pids.filter(alive)).toEqual([]), { timeout: 5_000, interval: 50 });
  });
});
