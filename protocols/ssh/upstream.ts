/**
 * The gateway's own SSH connection to the target: vaulted credentials, the target's host
 * key pinned through the broker (first use recorded, a change refused), a bounded wait.
 */
// ssh2 is CommonJS: Node's ESM loader only sees some of its exports by name.
import ssh2, { type Client, type ConnectConfig } from 'ssh2';
import type { Duplex } from 'node:stream';
import type { Broker } from '../../src/broker/broker.js';
import type { Resource, TargetCredentials } from '../../src/core/model.js';
import { fingerprint } from './codec.js';
import { refusals, type SshRefusal } from './errors.js';

export type UpstreamResult = { ok: true; conn: Client } | { ok: false; refusal: SshRefusal; why: string };

export interface UpstreamOptions {
  broker: Broker;
  resource: Resource;
  credentials: TargetCredentials | undefined;
  timeoutMs: number;
  /** Forwards the target's agent requests to the user's agent (only when the resource allows it). */
  agent?: InstanceType<typeof ssh2.BaseAgent>;
  /** Test hook: ssh2 debug lines. */
  debug?: (line: string) => void;
}

/** Opens the target connection; resolves once authenticated, or with a refusal saying why not. */
export function connectUpstream(o: UpstreamOptions): Promise<UpstreamResult> {
  const { resource, credentials } = o;
  if (!credentials || (!credentials.privateKey && !credentials.password)) {
    const why = 'no target credentials are vaulted for it';
    return Promise.resolve({ ok: false, refusal: refusals.upstream(resource.name, why), why });
  }
  return new Promise((resolve) => {
    const conn = new ssh2.Client();
    let mismatch: { got: string; pinned: string } | undefined;
    let settled = false;
    const settle = (r: UpstreamResult): void => {
      if (settled) return;
      settled = true;
      if (!r.ok) conn.end();
      resolve(r);
    };
    const fail = (why: string): void => settle({ ok: false, refusal: refusals.upstream(resource.name, why), why });

    const methods: Array<'publickey' | 'password'> = [];
    if (credentials.privateKey) methods.push('publickey');
    if (credentials.password) methods.push('password');
    const config: ConnectConfig = {
      host: resource.host,
      port: resource.port,
      username: credentials.login,
      readyTimeout: o.timeoutMs,
      authHandler: methods,
      hostVerifier: (key: Buffer, verify: (ok: boolean) => void) => {
        const fp = fingerprint(key);
        o.broker.pinTargetIdentity(resource.name, fp).then(
          (r) => {
            if (r === 'mismatch') mismatch = { got: fp, pinned: resource.hostKeyPin ?? 'another key' };
            verify(r !== 'mismatch');
          },
          () => verify(false),
        );
      },
    };
    if (credentials.privateKey) config.privateKey = credentials.privateKey;
    if (credentials.password) config.password = credentials.password;
    if (o.agent) config.agent = o.agent;
    if (o.debug) config.debug = o.debug;

    conn.once('ready', () => settle({ ok: true, conn }));
    conn.on('error', (err: Error & { level?: string; code?: string }) => {
      if (mismatch) {
        settle({ ok: false, refusal: refusals.hostKeyMismatch(resource.name, mismatch.got, mismatch.pinned), why: 'host key mismatch' });
        return;
      }
      fail(describe(err, resource));
    });
    conn.once('close', () => fail('the target closed the connection during login'));
    try {
      conn.connect(config);
    } catch (err) {
      fail(describe(err as Error, resource));
    }
  });
}

function describe(err: Error & { level?: string; code?: string }, r: Resource): string {
  const where = `${r.host}:${r.port}`;
  if (err.code === 'ECONNREFUSED') return `${where} refused the connection`;
  if (err.code === 'ENOTFOUND' || err.code === 'EAI_AGAIN') return `cannot resolve ${r.host}`;
  if (err.code === 'EHOSTUNREACH' || err.code === 'ENETUNREACH') return `${where} is unreachable`;
  if (err.level === 'client-timeout' || /timed out/i.test(err.message)) return `${where} did not answer in time`;
  if (err.level === 'client-authentication') return `the target rejected the vaulted credentials for ${r.name}`;
  return `${where}: ${err.message}`;
}

/**
 * An ssh2 agent whose every stream is a fresh `auth-agent@openssh.com` channel back to the
 * user's client: the target's agent requests reach the user's own agent, keys never leave it.
 */
export class ClientAgentRelay extends ssh2.BaseAgent {
  constructor(private readonly open: (cb: (err: Error | undefined, stream?: Duplex) => void) => void) {
    super();
  }

  // The gateway never signs with the user's agent itself: it only relays the target's requests.
  getIdentities(cb: (err: Error | undefined, keys?: never[]) => void): void {
    cb(new Error('the gateway does not use forwarded agents itself'));
  }

  sign(_key: unknown, _data: Buffer, optsOrCb: unknown, cb?: (err: Error | undefined) => void): void {
    const done = typeof optsOrCb === 'function' ? (optsOrCb as (err: Error | undefined) => void) : cb;
    done?.(new Error('the gateway does not use forwarded agents itself'));
  }

  override getStream(cb: (err: Error | undefined, stream?: Duplex) => void): void {
    this.open(cb);
  }
}
