/**
 * A target's start when the port its script picked is taken before the server binds it (one
 * full test run in 2,170 tests lost MariaDB's port so, on 2026-12-06): the start runs again on
 * a new port. A port the caller asked for is never moved. `TARGET_PORT_ONCE_FILE` (lib.sh
 * free_port) hands the first attempt a port this test holds.
 */
import { mkdtempSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { createServer, type Server, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { portTaken, startRedis, TargetStartError } from './index.js';

let holder: Server;
let held: number;
let dir: string;

beforeEach(async () => {
  holder = createServer((s) => s.destroy());
  await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
  held = (holder.address() as { port: number }).port;
  dir = mkdtempSync(join(tmpdir(), 'gh-start-'));
});

afterEach(async () => {
  delete process.env.TARGET_PORT_ONCE_FILE;
  await new Promise((resolve) => holder.close(resolve));
  rmSync(dir, { recursive: true, force: true });
});

/** Answers PING with the password, as redis-cli would: the server really is there. */
function ping(port: number, password: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1', () => s.write(`AUTH ${password}\r\nPING\r\n`));
    let got = '';
    s.on('data', (d) => {
      got += d.toString();
      if (got.includes('PONG')) {
        s.destroy();
        resolve(got);
      }
    });
    s.on('error', reject);
  });
}

describe('a target start that loses its port', () => {
  it('runs again on a new port when the port it picked was taken meanwhile', async () => {
    const once = join(dir, 'port');
    writeFileSync(once, String(held));
    process.env.TARGET_PORT_ONCE_FILE = once;
    const redis = await startRedis();
    try {
      // The first attempt was handed the held port (the file is gone) and gave it up.
      expect(existsSync(once)).toBe(false);
      expect(redis.port).not.toBe(held);
      expect(await ping(redis.port, redis.password)).toContain('+PONG');
    } finally {
      await redis.stop();
    }
  });

  it('fails at once on a port the caller asked for', async () => {
    const err = await startRedis({ port: held }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TargetStartError);
    expect((err as TargetStartError).stderr).toContain(`127.0.0.1:${held} is already in use`);
  });

  it("reads a server's own words for a port taken between the pick and its bind", () => {
    // MariaDB's log as its script printed it when the full run lost the port.
    const mariadb = "[ERROR] Can't start server: Bind on TCP/IP port. Got error: 98: Address already in use\n[mariadb] error: server exited before writing /tmp/x/mariadbd.pid";
    expect(portTaken(new TargetStartError('mariadb', 'start exited with 1', mariadb))).toBe(true);
    expect(portTaken(new TargetStartError('mariadb', 'start exited with 1', '[mariadb] error: no pid file at /tmp/x/mariadbd.pid'))).toBe(false);
    // Node's own words for it, and something that is not an error at all.
    expect(portTaken(new Error('listen EADDRINUSE: address already in use 127.0.0.1:5432'))).toBe(true);
    expect(portTaken('Address already in use')).toBe(false);
  });
});
