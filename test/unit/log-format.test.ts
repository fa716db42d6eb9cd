/**
 * Logs a person and a collector can both read: JSON lines off a terminal, pretty text on one
 * (or as `--log-format` / GATEHOUSE_LOG_FORMAT say), and never a key twice in one line.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { connect as tcpConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Writable } from 'node:stream';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { Client as SshClient } from 'ssh2';
import { afterEach, describe, expect, it } from 'vitest';
import { protocolAdapters } from '../../src/adapters.js';
import { ListenerNames, loadConfig } from '../../src/core/config.js';
import { createLogger, resolveLogFormat } from '../../src/core/log.js';
import { startGateway, type Gateway } from '../../src/gateway.js';

const ROOT = resolve(import.meta.dirname, '../..');
const BIN = join(ROOT, 'bin', 'gatehouse.js');

/** A log destination that keeps what it is given; `isTTY` as a terminal would set it. */
function capture(isTTY = false): Writable & { isTTY: boolean; text(): string; lines(): string[] } {
  const chunks: string[] = [];
  const out = new Writable({
    write(chunk: Buffer | string, _enc, done) {
      chunks.push(chunk.toString());
      done();
    },
  });
  return Object.assign(out, {
    isTTY,
    text: () => chunks.join(''),
    lines: () => chunks.join('').split('\n').filter((l) => l !== ''),
  });
}

/**
 * The keys that occur more than once in one object of a JSON text, as dotted paths.
 * JSON.parse keeps the last of two equal keys without a word, so it cannot tell.
 */
function duplicateKeys(text: string): string[] {
  JSON.parse(text);
  const found: string[] = [];
  let i = 0;
  const space = (): void => {
    while (/\s/.test(text[i] ?? '')) i++;
  };
  const string = (): string => {
    const start = i++;
    while (text[i] !== '"') i += text[i] === '\\' ? 2 : 1;
    i++;
    return JSON.parse(text.slice(start, i)) as string;
  };
  const value = (path: string): void => {
    space();
    if (text[i] === '{') {
      i++;
      const seen = new Set<string>();
      space();
      if (text[i] === '}') return void i++;
      for (;;) {
        space();
        const key = string();
        if (seen.has(key)) found.push(path + key);
        seen.add(key);
        space();
        i++; // the colon
        value(`${path}${key}.`);
        space();
        if (text[i++] === '}') return;
      }
    }
    if (text[i] === '[') {
      i++;
      space();
      if (text[i] === ']') return void i++;
      for (;;) {
        value(path);
        space();
        if (text[i++] === ']') return;
      }
    }
    if (text[i] === '"') return void string();
    while (i < text.length && !/[\s,\]}]/.test(text[i]!)) i++;
  };
  value('');
  return found;
}

describe('no log line carries a key twice', () => {
  let dir: string | undefined;
  let gw: Gateway | undefined;
  afterEach(async () => {
    await gw?.close();
    gw = undefined;
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('the duplicate-key check finds the doubled protocol the PostgreSQL and MySQL listener lines used to carry', () => {
    expect(duplicateKeys('{"level":30,"protocol":"postgres","protocol":"postgres","msg":"postgres gateway listening"}')).toEqual(['protocol']);
    expect(duplicateKeys('{"a":{"b":1,"c":[{"d":"x\\"}","d":2}]},"e":"a\\\\"}')).toEqual(['a.c.d']);
    expect(duplicateKeys('{"a":{"b":1},"b":{"a":1},"s":"{\\"a\\":1,\\"a\\":2}"}')).toEqual([]);
  });

  it('a gateway start with every door and a few refused connections logs each key once per line', async () => {
    dir = mkdtempSync(join(tmpdir(), 'gh-log-'));
    const out = capture();
    const log = createLogger({ level: 'debug' }, { format: 'json', destination: out });
    const cfg = loadConfig({
      data: join(dir, 'data'), cwd: dir, allowPlaintextOnLoopback: true,
      // Every door on a free port: a default one (LDAP's 13389) may be taken by another test file.
      listen: ListenerNames.map((n) => `${n}=127.0.0.1:0`),
    });
    gw = await startGateway(cfg, { adapters: await protocolAdapters(), log });
    const port = (name: 'api' | 'ssh' | 'postgres' | 'mysql'): number => gw!.addresses[name]!.port;

    const api = `http://127.0.0.1:${port('api')}/api/v1`;
    expect((await fetch(`${api}/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ user: 'admin', password: 'not-it-at-all' }) })).status).toBe(401);
    const psql = new pg.Client({ host: '127.0.0.1', port: port('postgres'), user: 'admin:nowhere', password: 'not-it-at-all', database: 'x', ssl: false });
    expect(await psql.connect().then(() => 'connected', (e: Error) => e.message)).toMatch(/nowhere|password|denied/i);
    await psql.end().catch(() => {});
    const my = await mysql.createConnection({ host: '127.0.0.1', port: port('mysql'), user: 'admin:nowhere', password: 'not-it-at-all' }).then(
      async (c) => {
        await c.end();
        return 'connected';
      },
      (e: Error) => e.message,
    );
    expect(my).toMatch(/nowhere|password|denied/i);
    const ssh = await new Promise<string>((done) => {
      const c = new SshClient();
      c.on('ready', () => {
        c.end();
        done('connected');
      });
      c.on('error', (e) => done(e.message));
      c.connect({ host: '127.0.0.1', port: port('ssh'), username: 'admin:nowhere', password: 'not-it-at-all', tryKeyboard: false });
    });
    expect(ssh).toMatch(/authentication/i);
    // Garbage where a PostgreSQL startup belongs: the door closes it without a reply.
    await new Promise<void>((done) => {
      const s = tcpConnect(port('postgres'), '127.0.0.1', () => s.end(Buffer.from('GET / HTTP/1.1\r\n\r\n')));
      s.on('close', () => done());
      s.on('error', () => {});
      s.resume();
    });
    await gw.close();
    gw = undefined;

    const lines = out.lines();
    const parsed = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    for (const door of ['ssh', 'postgres', 'mysql']) expect(parsed.find((l) => l.msg === `${door} gateway listening`)).toMatchObject({ protocol: door });
    expect(parsed.filter((l) => l.msg === 'postgres connection refused')).toEqual([
      expect.objectContaining({ protocol: 'postgres', code: 'bad_password' }),
      expect.objectContaining({ protocol: 'postgres', why: 'invalid length of startup packet' }),
    ]);
    const doubled = lines.map((line) => ({ line, keys: duplicateKeys(line) })).filter((l) => l.keys.length > 0);
    expect(doubled).toEqual([]);
  });
});

describe('log format', () => {
  it('is JSON when the logs do not go to a terminal and pretty text when they do', () => {
    const file = capture(false);
    createLogger({}, { destination: file }).info({ resource: 'prod-pg' }, 'policy loaded');
    expect(JSON.parse(file.lines()[0]!)).toMatchObject({ level: 30, resource: 'prod-pg', msg: 'policy loaded' });

    const terminal = capture(true);
    createLogger({}, { destination: terminal }).info({ resource: 'prod-pg' }, 'policy loaded');
    const line = terminal.lines()[0]!;
    expect(() => JSON.parse(line)).toThrow();
    // Colour codes on a terminal; the words themselves are what a person reads.
    // eslint-disable-next-line no-control-regex
    expect(line.replace(/\x1b\[\d+m/g, '')).toMatch(/^\[\d\d:\d\d:\d\d\.\d{3}\] INFO: policy loaded \{"resource":"prod-pg"\}$/);
  });

  it("a listener's TLS ticket key is redacted on its own, in a listener's tls and in a config's", () => {
    const out = capture(false);
    const key = 'k'.repeat(108);
    createLogger({}, { format: 'json', destination: out }).info({ ticketKey: key, tls: { ticketKey: key }, config: { tls: { cert: 'c', ticketKey: key } } }, 'listener');
    const line = out.lines()[0]!;
    expect(line).not.toContain(key);
    expect(JSON.parse(line)).toMatchObject({ ticketKey: '[redacted]', tls: { ticketKey: '[redacted]' }, config: { tls: { cert: 'c', ticketKey: '[redacted]' } } });
  });

  it('a chosen format wins over the terminal check, and pretty text keeps secrets redacted', () => {
    const terminal = capture(true);
    createLogger({}, { format: 'json', destination: terminal }).warn({ user: 'alice', password: 'hunter2' }, 'login failed');
    expect(JSON.parse(terminal.lines()[0]!)).toMatchObject({ user: 'alice', password: '[redacted]' });

    const file = capture(false);
    createLogger({}, { format: 'pretty', destination: file }).warn({ user: 'alice', password: 'hunter2' }, 'login failed');
    expect(file.text()).toMatch(/^\[[\d:.]+\] WARN: login failed \{"user":"alice","password":"\[redacted\]"\}\n$/);
    expect(file.text()).not.toContain('hunter2');
  });

  it('GATEHOUSE_LOG_FORMAT decides when no format is chosen; a value it does not know is refused by name', () => {
    expect(resolveLogFormat(undefined, {}, true)).toBe('pretty');
    expect(resolveLogFormat(undefined, {}, false)).toBe('json');
    expect(resolveLogFormat(undefined, { GATEHOUSE_LOG_FORMAT: 'json' }, true)).toBe('json');
    expect(resolveLogFormat(undefined, { GATEHOUSE_LOG_FORMAT: 'pretty' }, false)).toBe('pretty');
    expect(resolveLogFormat('json', { GATEHOUSE_LOG_FORMAT: 'pretty' }, true)).toBe('json');
    expect(() => resolveLogFormat(undefined, { GATEHOUSE_LOG_FORMAT: 'xml' }, false)).toThrow("GATEHOUSE_LOG_FORMAT: 'xml' is not one of json, pretty");
  });
});

describe('gatehouse serve on the console', () => {
  let dir: string | undefined;
  afterEach(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** Runs the built `gatehouse serve` until it has printed the CA line, then stops it with SIGTERM. */
  async function serveOnce(extra: string[]): Promise<{ stdout: string; stderr: string; code: number | null }> {
    dir = mkdtempSync(join(tmpdir(), 'gh-serve-log-'));
    const env: NodeJS.ProcessEnv = {};
    for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('GATEHOUSE_')) env[k] = v;
    const child = spawn(process.execPath, [BIN, 'serve', '--data', join(dir, 'data'), '--listen', 'api=127.0.0.1:0', '--listen', 'ssh=off',
      '--listen', 'postgres=127.0.0.1:0', '--listen', 'mysql=127.0.0.1:0', ...extra], { cwd: dir, env });
    let stdout = '';
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    // 'close', not 'exit': by then stdout and stderr have been read to the end.
    const exited = new Promise<number | null>((done) => child.once('close', (code) => done(code)));
    await new Promise<void>((started, failed) => {
      child.stdout.on('data', (d: Buffer) => {
        stdout += d.toString();
        if (stdout.includes('gateway CA:')) started();
      });
      void exited.then((code) => failed(new Error(`serve exited ${code}:\n${stdout}${stderr}`)));
    });
    child.kill('SIGTERM');
    const code = await exited;
    return { stdout, stderr, code };
  }

  it('prints listeners, the admin password and the CA as plain lines on stdout, and logs JSON on stderr off a terminal', async () => {
    const r = await serveOnce([]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^Gatehouse is running \(data: .*\)\nlistening api http:\/\/127\.0\.0\.1:\d+\nlistening postgres postgres:\/\/127\.0\.0\.1:\d+\nlistening mysql mysql:\/\/127\.0\.0\.1:\d+\n/);
    expect(r.stdout).toMatch(/\nfirst run: admin user 'admin', one-time password: \S{20,}\nsign in with: gatehouse login --user admin --server http:\/\/127\.0\.0\.1:\d+\ngateway CA: \S+ca\.pem\n$/);
    expect(r.stdout).not.toContain('{');
    const logs = r.stderr.split('\n').filter(Boolean);
    expect(logs.length).toBeGreaterThan(0);
    for (const line of logs) expect(duplicateKeys(line)).toEqual([]);
    expect(logs.map((l) => (JSON.parse(l) as { msg: string }).msg)).toEqual(expect.arrayContaining(['postgres gateway listening', 'mysql gateway listening']));
  });

  it('refuses a GATEHOUSE_LOG_FORMAT it does not know before it creates anything', () => {
    dir = mkdtempSync(join(tmpdir(), 'gh-serve-log-'));
    const r = spawnSync(process.execPath, [BIN, 'serve', '--data', join(dir, 'data'), '--listen', 'api=127.0.0.1:0'], {
      cwd: dir, encoding: 'utf8', env: { PATH: process.env.PATH, HOME: dir, GATEHOUSE_LOG_FORMAT: 'xml' },
    });
    expect(r.status).toBe(1);
    expect(r.stderr).toBe("gatehouse: GATEHOUSE_LOG_FORMAT: 'xml' is not one of json, pretty\n");
    expect(existsSync(join(dir, 'data'))).toBe(false);
  });

  it('logs pretty text with --log-format pretty, even off a terminal', async () => {
    const r = await serveOnce(['--log-format', 'pretty']);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/^\[[\d:.]+\] INFO: postgres gateway listening \{"protocol":"postgres","address":"127\.0\.0\.1:\d+"\}$/m);
    expect(r.stderr).not.toMatch(/^\{/m);
  });
});
