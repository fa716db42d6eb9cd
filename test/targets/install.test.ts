/**
 * The install step of test/targets serializes: every apt-get runs under one flock
 * (lib.sh, with_install_lock), shared by install.sh (vitest's globalSetup) and ensure_pkg
 * (a target script started by hand). Each test gets a private lock file, a fake apt-get and
 * a trace file that the lock holders append to, so ordering is read from one output, and
 * every wait is on an event (a line of output, a process exit), never on a sleep.
 */
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

const TARGETS = fileURLToPath(new URL('.', import.meta.url));
const LIB = join(TARGETS, 'lib.sh');
const INSTALL = join(TARGETS, 'install.sh');
const TIMEOUT = 20_000;

/**
 * A stand-in for apt-get: traces each call, blocks while $FAKE_GATE is locked, fails the
 * first $FAKE_FAILURES installs, and "installs" package P as the executable $FAKE_BIN/P.
 */
const FAKE_APT = `#!/bin/sh
echo "apt-get $1" >>"$GATEHOUSE_INSTALL_TRACE"
if [ -n "\${FAKE_GATE:-}" ]; then flock "$FAKE_GATE" true; fi
if [ "$1" = install ]; then
  n=$(cat "$FAKE_BIN/.installs" 2>/dev/null || echo 0)
  echo $((n + 1)) >"$FAKE_BIN/.installs"
  if [ "$n" -lt "\${FAKE_FAILURES:-0}" ]; then echo "E: fake failure" >&2; exit 100; fi
  shift
  while [ $# -gt 0 ]; do
    case $1 in
      -o) shift ;;
      -*) ;;
      *) printf '#!/bin/sh\\n' >"$FAKE_BIN/$1"; chmod +x "$FAKE_BIN/$1" ;;
    esac
    shift
  done
fi
`;

interface Run {
  child: ChildProcessWithoutNullStreams;
  /** Resolves once the stream so far matches `re`; rejects if the process ends first. */
  output(re: RegExp, stream?: 'stdout' | 'stderr'): Promise<void>;
  /** Exit code and everything written to stderr. */
  done: Promise<{ code: number | null; stderr: string }>;
}

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv): Run {
  const child = spawn(cmd, args, { env: { ...process.env, ...env } });
  const text = { stdout: '', stderr: '' };
  const waiters: Array<() => void> = [];
  for (const stream of ['stdout', 'stderr'] as const) {
    child[stream].on('data', (d: Buffer) => {
      text[stream] += d.toString();
      for (const w of [...waiters]) w();
    });
  }
  const done = new Promise<{ code: number | null; stderr: string }>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) => {
      resolve({ code, stderr: text.stderr });
      for (const w of [...waiters]) w();
    });
  });
  const output = (re: RegExp, stream: 'stdout' | 'stderr' = 'stderr'): Promise<void> =>
    new Promise((resolve, reject) => {
      const check = (): void => {
        if (re.test(text[stream])) {
          waiters.splice(waiters.indexOf(check), 1);
          resolve();
        } else if (child.exitCode !== null || child.signalCode !== null) {
          waiters.splice(waiters.indexOf(check), 1);
          reject(new Error(`${cmd} ended before printing ${re}:\n${text.stderr}`));
        }
      };
      waiters.push(check);
      check();
    });
  return { child, output, done };
}

describe('test/targets install lock', () => {
  let dir: string;
  let env: NodeJS.ProcessEnv;
  const holders: Run[] = [];

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'gh-install-test-'));
    mkdirSync(join(dir, 'bin'));
    mkdirSync(join(dir, 'lists'));
    writeFileSync(join(dir, 'lists', 'deb.example_dists_main_binary-amd64_Packages'), '');
    writeFileSync(join(dir, 'apt-get'), FAKE_APT);
    chmodSync(join(dir, 'apt-get'), 0o755);
    writeFileSync(join(dir, 'trace'), '');
    env = {
      GATEHOUSE_INSTALL_LOCK: join(dir, 'install.lock'),
      GATEHOUSE_INSTALL_TRACE: join(dir, 'trace'),
      GATEHOUSE_APT_GET: join(dir, 'apt-get'),
      GATEHOUSE_APT_LISTS: join(dir, 'lists'),
      FAKE_BIN: join(dir, 'bin'),
    };
  });

  afterEach(async () => {
    for (const h of holders.splice(0)) {
      h.child.stdin.end();
      await h.done;
    }
    rmSync(dir, { recursive: true, force: true });
  });

  /** The trace, one entry per line, without pids: "locked a", "apt-get install", ... */
  function trace(): string[] {
    return readFileSync(join(dir, 'trace'), 'utf8').split('\n').filter(Boolean).map((l) => l.replace(/:\d+$/, ''));
  }

  /** Another process takes `lockFile` and keeps it until release() (its stdin closes). */
  async function hold(lockFile: string): Promise<{ release(): Promise<void> }> {
    const h = run('flock', [lockFile, 'sh', '-c', 'echo held; cat >/dev/null; echo "holder releasing" >>"$GATEHOUSE_INSTALL_TRACE"'], env);
    holders.push(h);
    await h.output(/held/, 'stdout');
    return {
      release: async () => {
        holders.splice(holders.indexOf(h), 1);
        h.child.stdin.end();
        expect((await h.done).code).toBe(0);
      },
    };
  }

  function ensurePkg(label: string, bin: string, ...pkgs: string[]): Run {
    const script = 'set -euo pipefail; TARGET_KIND=$1; shift; source "$0"; ensure_pkg "$@"';
    return run('bash', ['-c', script, LIB, label, bin, ...pkgs], env);
  }

  it('a present binary never waits: two parallel ensure_pkg runs succeed while the lock is held', { timeout: TIMEOUT }, async () => {
    const held = await hold(env.GATEHOUSE_INSTALL_LOCK!);
    const [a, b] = await Promise.all([ensurePkg('a', 'bash', 'bash').done, ensurePkg('b', 'bash', 'bash').done]);
    expect(a.code, a.stderr).toBe(0);
    expect(b.code, b.stderr).toBe(0);
    await held.release();
    expect(trace()).toEqual(['holder releasing']);
  });

  it('a missing package is installed once: a second ensure_pkg waits for the lock, then finds it installed', { timeout: TIMEOUT }, async () => {
    const tool = join(dir, 'bin', 'fake-tool');
    // The gate keeps the fake apt-get busy until both runs are in place.
    const gate = await hold(join(dir, 'gate'));
    env.FAKE_GATE = join(dir, 'gate');

    const a = ensurePkg('a', tool, 'fake-tool');
    await a.output(/apt-get install .*fake-tool/);
    const b = ensurePkg('b', tool, 'fake-tool');
    await b.output(/waiting for the install lock/);
    expect(trace()).toEqual(['locked a', 'apt-get install']);

    await gate.release();
    const [ra, rb] = await Promise.all([a.done, b.done]);
    expect(ra.code, ra.stderr).toBe(0);
    expect(rb.code, rb.stderr).toBe(0);
    expect(rb.stderr).toMatch(/was installed while we waited/);
    expect(existsSync(tool)).toBe(true);
    expect(trace()).toEqual(['locked a', 'apt-get install', 'holder releasing', 'unlocking a', 'locked b', 'unlocking b']);
  });

  it('ensure_pkg starts apt-get only after the process holding the lock lets go', { timeout: TIMEOUT }, async () => {
    const held = await hold(env.GATEHOUSE_INSTALL_LOCK!);
    const a = ensurePkg('a', join(dir, 'bin', 'fake-tool'), 'fake-tool');
    await a.output(/waiting for the install lock/);
    expect(trace()).toEqual([]);
    await held.release();
    const ra = await a.done;
    expect(ra.code, ra.stderr).toBe(0);
    expect(trace()).toEqual(['holder releasing', 'locked a', 'apt-get install', 'unlocking a']);
  });

  it('refreshes the package lists once, and only when an install fails', { timeout: TIMEOUT }, async () => {
    env.FAKE_FAILURES = '1';
    const ok = await ensurePkg('a', join(dir, 'bin', 'tool-1'), 'tool-1').done;
    expect(ok.code, ok.stderr).toBe(0);
    expect(trace()).toEqual(['locked a', 'apt-get install', 'apt-get update', 'apt-get install', 'unlocking a']);

    writeFileSync(join(dir, 'trace'), '');
    rmSync(join(dir, 'bin', '.installs'));
    env.FAKE_FAILURES = '2';
    const failed = await ensurePkg('b', join(dir, 'bin', 'tool-2'), 'tool-2').done;
    expect(failed.code).not.toBe(0);
    expect(failed.stderr).toMatch(/apt-get install tool-2 failed/);
    // die exits under the lock, so no "unlocking" line: the exit itself releases it.
    expect(trace()).toEqual(['locked b', 'apt-get install', 'apt-get update', 'apt-get install']);
  });

  it('updates the package lists first when there are none', { timeout: TIMEOUT }, async () => {
    rmSync(join(dir, 'lists'), { recursive: true });
    const r = await ensurePkg('a', join(dir, 'bin', 'tool'), 'tool').done;
    expect(r.code, r.stderr).toBe(0);
    expect(trace()).toEqual(['locked a', 'apt-get update', 'apt-get install', 'unlocking a']);
  });

  it('two install.sh runs queued behind a held lock run one at a time, after it is released', { timeout: TIMEOUT }, async () => {
    // install.sh checks the real machine, which the global setup has just made complete.
    const check = spawnSync('bash', [INSTALL, '--check'], { encoding: 'utf8' });
    expect(check.status, check.stderr).toBe(0);
    const held = await hold(env.GATEHOUSE_INSTALL_LOCK!);
    const first = run('bash', [INSTALL], env);
    const second = run('bash', [INSTALL], env);
    await Promise.all([first.output(/waiting for the install lock/), second.output(/waiting for the install lock/)]);
    expect(trace()).toEqual([]);

    await held.release();
    const results = await Promise.all([first.done, second.done]);
    for (const r of results) {
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).toMatch(/every package the tests need is installed/);
    }
    // Whole lock/unlock pairs, never interleaved; nothing was missing, so no apt-get.
    const lines = readFileSync(join(dir, 'trace'), 'utf8').split('\n').filter(Boolean);
    expect(lines).toHaveLength(5);
    expect(lines[0]).toBe('holder releasing');
    expect(lines[1]).toMatch(/^locked install:\d+$/);
    expect(lines[2]).toBe(lines[1]!.replace('locked', 'unlocking'));
    expect(lines[3]).toMatch(/^locked install:\d+$/);
    expect(lines[4]).toBe(lines[3]!.replace('locked', 'unlocking'));
    expect(lines[1]).not.toBe(lines[3]);
  });
});

describe('test/targets packages', () => {
  const scripts = readdirSync(TARGETS).filter((f) => f.endsWith('.sh') && f !== 'lib.sh' && f !== 'install.sh');
  const requirements = /^REQUIREMENTS=\(\n([\s\S]*?)\n\)/m.exec(readFileSync(INSTALL, 'utf8'))![1]!;
  const listed = new Set(requirements.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#')).map((l) => l.split(/\s+/).at(-1)!));

  it.each(scripts)('%s installs nothing install.sh does not install first, and only through ensure_pkg (under the lock)', (script) => {
    const text = readFileSync(join(TARGETS, script), 'utf8');
    // apt only in lib.sh, whose ensure_pkg takes the install lock: parallel test files never collide on dpkg's lock.
    expect(text).not.toMatch(/\bapt(-get)?\s+(install|update)\b|\bdpkg\s+-i\b|\bapt_install\b/);
    const packages = [...text.matchAll(/^\s*ensure_pkg\s+\S+\s+(.+)$/gm)].flatMap((m) => m[1]!.trim().split(/\s+/));
    expect(packages.length, 'a target script names what it needs').toBeGreaterThan(0);
    for (const p of packages) expect(listed, `${script} needs ${p}: add it to install.sh's REQUIREMENTS`).toContain(p);
  });
});
