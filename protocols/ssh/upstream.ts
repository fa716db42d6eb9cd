/**
 * The gateway's own SSH connection to the target: vaulted credentials, the target's host
 * key verified through the port (pinned on first use, a change refused), a bounded wait.
 */
// ssh2 is CommonJS: Node's ESM loader only sees some of its exports by name.
import ssh2, { type Client, type ConnectConfig } from 'ssh2';
import type { Duplex } from 'node:stream';
import type { GatewayPort } from '../../src/broker/port.js';
import { UpstreamError } from '../../src/broker/upstream-error.js';
import type { Resource, TargetCredentials } from '../../src/core/model.js';
import { fingerprint } from './codec.js';

export type UpstreamResult = { ok: true; conn: Client } | { ok: false; error: UpstreamError };

export interface UpstreamOptions {
  port: Pick<GatewayPort, 'verifyTarget'>;
  resource: Resource;
  credentials: TargetCredentials | undefined;
  timeoutMs: number;
  /** Forwards the target's agent requests to the user's agent (only when the resource allows it). */
  agent?: InstanceType<typeof ssh2.BaseAgent>;
  /** Test hook: ssh2 debug lines. */
  debug?: (line: string) => void;
}

/** Opens the target connection; resolves once authenticated, or with the UpstreamError saying why not. */
export function connectUpstream(o: UpstreamOptions): Promise<UpstreamResult> {
  const { resource, credentials } = o;
  if (!credentials || (!credentials.privateKey && !credentials.password)) {
    return Promise.resolve({ ok: false, error: new UpstreamError('no_credentials', 'no target credentials are vaulted for it') });
  }
  return new Promise((resolve) => {
    const conn = new ssh2.Client();
    /** The host key was refused: that, not ssh2's "verification failed", is the reason. */
    let identity: UpstreamError | undefined;
    let settled = false;
    const settle = (r: UpstreamResult): void => {
      if (settled) return;
      settled = true;
      if (!r.ok) conn.end();
      resolve(r);
    };
    const fail = (err: UpstreamError): void => settle({ ok: false, error: identity ?? err });

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
        o.port.verifyTarget(resource.name, { kind: 'pin', what: 'SSH host key', fingerprint: fingerprint(key) }).then(
          () => verify(true),
          (err: unknown) => {
            identity = err instanceof UpstreamError ? err : new UpstreamError('identity', `its SSH host key could not be checked (${(err as Error).message})`);
            verify(false);
          },
        );
      },
    };
    if (credentials.privateKey) config.privateKey = credentials.privateKey;
    if (credentials.password) config.password = credentials.password;
    if (o.agent) config.agent = o.agent;
    if (o.debug) config.debug = o.debug;

    conn.once('ready', () => settle({ ok: true, conn }));
    conn.on('error', (err: Error & { level?: string; code?: string }) => fail(classify(err, resource)));
    conn.once('close', () => fail(new UpstreamError('unreachable', 'the target closed the connection during login')));
    try {
      conn.connect(config);
    } catch (err) {
      fail(classify(err as Error, resource));
    }
  });
}

/** ssh2's and the socket's errors as the gateway's one UpstreamError, with a sentence for the user. */
function classify(err: Error & { level?: string; code?: string }, r: Resource): UpstreamError {
  const where = `${r.host}:${r.port}`;
  if (err.code === 'ECONNREFUSED') return new UpstreamError('unreachable', `${where} refused the connection`);
  if (err.code === 'ENOTFOUND' || err.code === 'EAI_AGAIN') return new UpstreamError('unreachable', `cannot resolve ${r.host}`);
  if (err.code === 'EHOSTUNREACH' || err.code === 'ENETUNREACH') return new UpstreamError('unreachable', `${where} is unreachable`);
  if (err.level === 'client-timeout' || /timed out/i.test(err.message)) return new UpstreamError('timeout', `${where} did not answer in time`);
  if (err.level === 'client-authentication') return new UpstreamError('login', `the target rejected the vaulted credentials for ${r.name}`);
  if (err.level === 'protocol' || err.level === 'handshake') return new UpstreamError('protocol', `${where}: ${err.message}`);
  return new UpstreamError('unreachable', `${where}: ${err.message}`);
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
