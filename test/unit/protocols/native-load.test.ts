/**
 * Which data path a PostgreSQL or MySQL listener gets (protocols/shared/native.ts): the native one
 * where its addon loads, the JavaScript relay where it cannot (not built, built against another
 * OpenSSL), with a log line saying which and why; `relay: 'native'` refuses to start without it.
 */
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../../src/core/log.js';
import type { ListenerConfig } from '../../../src/broker/adapter.js';
import { ensurePki } from '../../../src/pki/pki.js';
import { MysqlAdapter } from '../../../protocols/mysql/index.js';
import { ADDON, loadNative, loopFor, nativeLoop, relayChoice, tlsRecordsChoice } from '../../../protocols/postgres/native.js';

function recordingLogger(): { log: ReturnType<typeof createLogger>; lines: () => Array<Record<string, unknown>> } {
  const chunks: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, cb) {
      chunks.push(chunk.toString());
      cb();
    },
  });
  const log = createLogger({ level: 'info' }, { format: 'json', destination });
  return { log, lines: () => chunks.join('').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>) };
}

const dirs: string[] = [];
const scratch = (): string => {
  const d = mkdtempSync(join(tmpdir(), 'gh-native-'));
  dirs.push(d);
  return d;
};
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('the PostgreSQL data path', () => {
  it('is native on this machine: npm run build compiled the addon and it loads (the protocol suites run on it)', () => {
    const r = nativeLoop();
    expect(r).toHaveProperty('loop');
    expect('loop' in r && r.loop.endpoints).toBeGreaterThanOrEqual(0);
  });

  it('falls back to the JavaScript relay where the addon is not built, and says why', () => {
    const { log, lines } = recordingLogger();
    const missing = join(scratch(), 'pg-relay.node');
    expect(loopFor('auto', log, () => loadNative(missing))).toBeUndefined();
    expect(lines()).toContainEqual(expect.objectContaining({ level: 40, relay: 'node', reason: expect.stringContaining('is not built'), msg: 'postgres data path: Node streams (the native one cannot load)' }));
  });

  it('does not load an addon built against another OpenSSL major version than this Node has', () => {
    const dir = scratch();
    const copy = join(dir, 'pg-relay.node');
    copyFileSync(ADDON, copy);
    writeFileSync(join(dir, 'pg-relay.json'), JSON.stringify({ openssl: '1.1.1w', napi: 8 }));
    const r = loadNative(copy);
    expect(r).toEqual({ reason: `built against OpenSSL 1.1.1w, and this Node has ${process.versions.openssl}` });
  });

  it('relay: native refuses to start a listener without the addon; relay: node never loads it', () => {
    const { log, lines } = recordingLogger();
    const missing = join(scratch(), 'nothing.node');
    expect(() => loopFor('native', log, () => loadNative(missing))).toThrow(expect.objectContaining({ code: 'VALIDATION', field: 'relay' }));
    let loads = 0;
    expect(loopFor('node', log, () => (loads++, nativeLoop()))).toBeUndefined();
    expect(loads).toBe(0);
    expect(lines()).toContainEqual(expect.objectContaining({ relay: 'node', msg: 'postgres data path: Node streams (relay: node)' }));
  });

  it('takes the relay from the option, else GATEHOUSE_POSTGRES_RELAY, and rejects anything else', () => {
    const saved = process.env.GATEHOUSE_POSTGRES_RELAY;
    try {
      process.env.GATEHOUSE_POSTGRES_RELAY = 'node';
      expect(relayChoice(undefined)).toBe('node');
      expect(relayChoice('native')).toBe('native');
      delete process.env.GATEHOUSE_POSTGRES_RELAY;
      expect(relayChoice(undefined)).toBe('auto');
      process.env.GATEHOUSE_POSTGRES_RELAY = 'fast';
      expect(() => relayChoice(undefined)).toThrow(expect.objectContaining({ code: 'VALIDATION', field: 'relay' }));
    } finally {
      if (saved === undefined) delete process.env.GATEHOUSE_POSTGRES_RELAY;
      else process.env.GATEHOUSE_POSTGRES_RELAY = saved;
    }
  });
});

describe('the MySQL data path', () => {
  it('is chosen like the PostgreSQL one, from its own option or GATEHOUSE_MYSQL_RELAY and GATEHOUSE_MYSQL_TLS_RECORDS', () => {
    const saved = { relay: process.env.GATEHOUSE_MYSQL_RELAY, records: process.env.GATEHOUSE_MYSQL_TLS_RECORDS, pg: process.env.GATEHOUSE_POSTGRES_RELAY };
    const restore = (k: string, v: string | undefined): void => {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    };
    try {
      process.env.GATEHOUSE_MYSQL_RELAY = 'node';
      process.env.GATEHOUSE_POSTGRES_RELAY = 'native';
      expect(relayChoice(undefined, 'mysql')).toBe('node');
      expect(relayChoice(undefined, 'postgres')).toBe('native');
      expect(relayChoice('auto', 'mysql')).toBe('auto');
      process.env.GATEHOUSE_MYSQL_TLS_RECORDS = 'openssl';
      expect(tlsRecordsChoice(undefined, 'mysql')).toBe('openssl');
      process.env.GATEHOUSE_MYSQL_TLS_RECORDS = 'fast';
      expect(() => tlsRecordsChoice(undefined, 'mysql')).toThrow(expect.objectContaining({ code: 'VALIDATION', field: 'tlsRecords' }));
    } finally {
      restore('GATEHOUSE_MYSQL_RELAY', saved.relay);
      restore('GATEHOUSE_MYSQL_TLS_RECORDS', saved.records);
      restore('GATEHOUSE_POSTGRES_RELAY', saved.pg);
    }
  });

  it('logs which one each MySQL listener uses, and falls back the same way', () => {
    const { log, lines } = recordingLogger();
    expect(loopFor('auto', log, nativeLoop, 'mysql')).toBeDefined();
    expect(loopFor('auto', log, () => loadNative(join(scratch(), 'pg-relay.node')), 'mysql')).toBeUndefined();
    expect(lines()).toEqual([
      expect.objectContaining({ relay: 'native', msg: 'mysql data path: native' }),
      expect.objectContaining({ level: 40, relay: 'node', reason: expect.stringContaining('is not built'), msg: 'mysql data path: Node streams (the native one cannot load)' }),
    ]);
  });

  it('starts a MySQL listener on it: the adapter logs the native path, and relay: node keeps Node streams', async () => {
    const pki = await ensurePki(join(scratch(), 'certs'));
    const tls = { cert: pki.certPem, key: pki.keyPem, ca: pki.caCertPem };
    const broker = { portFor: () => ({}) } as unknown as ListenerConfig['broker'];
    for (const relay of ['auto', 'node'] as const) {
      const { log, lines } = recordingLogger();
      const listener = await new MysqlAdapter({ relay }).listen({ host: '127.0.0.1', port: 0, broker, log, tls });
      await listener.close();
      expect(lines().map((l) => l.msg)).toContain(relay === 'auto' ? 'mysql data path: native' : 'mysql data path: Node streams (relay: node)');
    }
  });
});
