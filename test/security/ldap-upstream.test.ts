/**
 * The LDAP door's target leg against a downgrade and an impostor. A hostile "directory" (a
 * small net.Server, a test tool speaking just enough LDAP, recording every byte) refuses
 * StartTLS so the gateway would bind in clear; the real slapd is presented with a CA it
 * does not chain to. The vaulted password must never leave the gateway in either case.
 * Plaintext is allowed only for a resource that says so (`options.allowPlaintextUpstream`),
 * and never once its TLS certificate is pinned.
 */
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { readFileSync } from 'node:fs';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Listener } from '../../src/broker/adapter.js';
import { silentLogger } from '../../src/core/log.js';
import type { ResourceOptions } from '../../src/core/model.js';
import { decodeEnvelope, extendedResponse, frameSize, Op, resultMessage, ResultCode } from '../../protocols/ldap/codec.js';
import { LdapsAdapter, type LdapAdapterOptions } from '../../protocols/ldap/index.js';
import { GATEWAY_PASSWORD, makeGateway, type GatewayHarness } from '../protocols/gateway-harness.js';
import { eventually } from '../protocols/contract-driver.js';
import { watchedLdapsClient } from '../protocols/ldap-client.js';
import { startSlapd, type SlapdTarget } from '../targets/index.js';

const VAULTED = 'vaulted-Directory-Secret-4711';

/** A directory that refuses StartTLS and accepts any bind; it records the tags of what it got. */
interface FakeDirectory {
  port: number;
  received(): Buffer;
  ops: number[];
  close(): Promise<void>;
}

async function fakeDirectory(): Promise<FakeDirectory> {
  const seen: Buffer[] = [];
  const ops: number[] = [];
  const sockets = new Set<Socket>();
  const server: Server = createServer((s) => {
    sockets.add(s);
    s.on('error', () => {});
    s.on('close', () => sockets.delete(s));
    let buf = Buffer.alloc(0);
    s.on('data', (chunk: Buffer) => {
      seen.push(chunk);
      buf = Buffer.concat([buf, chunk]);
      for (let size = frameSize(buf, 1 << 20); size !== undefined; size = frameSize(buf, 1 << 20)) {
        const frame = buf.subarray(0, size);
        buf = buf.subarray(size);
        const env = decodeEnvelope(frame);
        ops.push(env.op);
        if (env.op === Op.ExtendedRequest) s.write(extendedResponse(env.id, ResultCode.unavailable, 'no TLS here'));
        else if (env.op === Op.BindRequest) s.write(resultMessage(env.id, Op.BindResponse, ResultCode.success, ''));
        else if (env.op === Op.SearchRequest) s.write(resultMessage(env.id, Op.SearchResultDone, ResultCode.success, ''));
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    received: () => Buffer.concat(seen),
    ops,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

let gw: GatewayHarness;
let fake: FakeDirectory;
let listener: Listener | undefined;

beforeEach(async () => {
  gw = await makeGateway();
  fake = await fakeDirectory();
});
afterEach(async () => {
  await listener?.close();
  listener = undefined;
  await fake.close();
  await gw.cleanup();
});

async function door(opts: LdapAdapterOptions = { upstreamTls: 'require' }): Promise<number> {
  listener = await new LdapsAdapter(opts).listen({
    host: '127.0.0.1', port: 0, broker: gw.broker, log: silentLogger, tls: { cert: gw.pki.certPem, key: gw.pki.keyPem, ca: gw.pki.caCertPem },
  });
  return listener.address.port;
}

async function resource(name: string, port: number, options: ResourceOptions = {}, login = 'cn=svc,dc=example,dc=com', password = VAULTED): Promise<void> {
  await gw.addResource({ name, type: 'directory', protocol: 'ldap', host: '127.0.0.1', port, credentials: { login, password }, settings: {}, options });
}

async function bind(port: number, resourceName: string): Promise<string> {
  const w = watchedLdapsClient(port, gw.pki.caCertPem);
  try {
    await w.client.bind(`alice:${resourceName}`, GATEWAY_PASSWORD);
    return 'bound';
  } catch (e) {
    return (e as Error).message;
  } finally {
    await w.client.unbind().catch(() => undefined);
  }
}

describe('a directory that refuses StartTLS', () => {
  it('is refused by default: the vaulted password is never sent', async () => {
    await resource('corp', fake.port);
    const said = await bind(await door(), 'corp');
    expect(said).toContain('(target_identity)');
    expect(said).toContain('refused StartTLS');
    expect(fake.ops).toEqual([Op.ExtendedRequest]);
    expect(fake.received().includes(Buffer.from(VAULTED))).toBe(false);
  });

  it('is reached in plaintext only when the resource allows a plaintext lab directory, and that is on the record', async () => {
    await resource('lab', fake.port, { allowPlaintextUpstream: true });
    expect(await bind(await door(), 'lab')).toBe('bound');
    // The client's unbind reaches the directory after the client has moved on.
    expect(await eventually(() => fake.ops.length === 3)).toBe(true);
    expect(fake.ops).toEqual([Op.ExtendedRequest, Op.BindRequest, Op.UnbindRequest]);
    const start = await gw.store.listAudit({ action: 'session.start' });
    expect(start.at(-1)?.data).toMatchObject({ resource: 'lab', upstreamTls: false });
  });

  it('is refused once a TLS certificate is pinned for the resource, even if it allows plaintext', async () => {
    await resource('pinned', fake.port, { allowPlaintextUpstream: true });
    await gw.store.putResource({ ...(await gw.store.getResource('pinned'))!, hostKeyPin: 'tls-sha256:AA:BB' });
    const said = await bind(await door(), 'pinned');
    expect(said).toContain('(target_identity)');
    expect(said).toContain('no longer accepts StartTLS');
    expect(fake.received().includes(Buffer.from(VAULTED))).toBe(false);
  });
});

describe('the real slapd with a CA it does not chain to', () => {
  let slapd: SlapdTarget;
  beforeAll(async () => {
    slapd = await startSlapd();
  });
  afterAll(async () => {
    await slapd?.stop();
  });

  it('is refused before the bind; with its own CA it is reached', async () => {
    const binds = (): number => readFileSync(slapd.log, 'utf8').split(slapd.bindLine).length - 1;
    const before = binds();
    await resource('corp', slapd.port, {}, slapd.user, slapd.password);
    // The gateway's own CA: a valid CA, but not the directory's.
    const wrong = await bind(await door({ upstreamTls: 'require', upstreamCa: { corp: gw.pki.caCertPem } }), 'corp');
    expect(wrong).toContain('(target_identity)');
    expect(wrong).toContain('does not verify against the configured CA');
    expect(binds()).toBe(before);
    await listener!.close();

    expect(await bind(await door({ upstreamTls: 'require', upstreamCa: { corp: readFileSync(slapd.ca, 'utf8') } }), 'corp')).toBe('bound');
    expect(binds()).toBe(before + 1);
  });
});
