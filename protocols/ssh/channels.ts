/**
 * Channel relays between the user's client and the target. Bytes are piped as they come
 * (stream.pipe: ssh2 turns a full pipe into a closed SSH window, so backpressure reaches the
 * sender); the gateway only counts them.
 */
import type { Channel, Client, ClientChannel, ExecOptions, PseudoTtyInfo, ServerChannel, Session, X11Info } from 'ssh2';
import type { GatewaySession } from '../../src/broker/port.js';
import type { Logger } from '../../src/core/log.js';
import type { Resource } from '../../src/core/model.js';
import { channelRefusals } from './errors.js';

export interface RelayHost {
  readonly resource: Resource;
  readonly session: GatewaySession;
  readonly upstream: Client;
  readonly log: Logger;
}

type Accept = (() => void) | undefined;
type Reject = (() => void) | undefined;
type Exit = { code: number } | { signal: string; dump: boolean; desc: string };

const MAX_ENV = 64;

/** Splices a client-side channel to a target-side one (tunnels, forwarded connections). */
export function splice(session: GatewaySession, client: Channel, target: Channel): void {
  client.on('data', (b: Buffer) => void (session.bytesIn += b.length));
  target.on('data', (b: Buffer) => void (session.bytesOut += b.length));
  client.pipe(target);
  target.pipe(client);
  client.once('close', () => target.close());
  target.once('close', () => client.close());
  client.on('error', () => target.close());
  target.on('error', () => client.close());
}

/** Runs `fn` once everything already written to the channel (stdout and stderr) is sent. */
function whenFlushed(ch: ServerChannel, fn: () => void): void {
  let waiting = 2;
  const done = (): void => {
    if (--waiting === 0) fn();
  };
  for (const w of [ch, ch.stderr]) {
    if (w.writableLength === 0 || !w.writable) done();
    else w.write(Buffer.alloc(0), done);
  }
}

/**
 * One `session` channel: pty, env, x11 and agent requests are collected; shell, exec or a
 * subsystem is accepted at once (so no byte the client sends next is lost) and opened on the
 * target, then piped.
 */
export class SessionRelay {
  private pty: PseudoTtyInfo | undefined;
  private readonly env: Record<string, string> = {};
  private envCount = 0;
  private x11: X11Info | undefined;
  private agent = false;
  private kind: 'shell' | 'exec' | 'subsystem' | undefined;
  private ch: ServerChannel | undefined;
  private up: ClientChannel | undefined;
  private exit: Exit | undefined;
  private closed = false;
  private readonly notices: string[] = [];

  constructor(
    private readonly host: RelayHost,
    session: Session,
    private readonly allow: { x11: boolean; agent: boolean },
    private readonly onGone: (r: SessionRelay) => void,
  ) {
    session.on('pty', (accept: Accept, _reject: Reject, info: PseudoTtyInfo) => {
      this.pty = info;
      accept?.();
    });
    session.on('window-change', (accept: Accept, _reject: Reject, info: { rows: number; cols: number; height: number; width: number }) => {
      if (this.pty) this.pty = { ...this.pty, rows: info.rows, cols: info.cols, height: info.height, width: info.width };
      this.up?.setWindow(info.rows, info.cols, info.height, info.width);
      accept?.();
    });
    session.on('env', (accept: Accept, reject: Reject, info: { key: string; val: string }) => {
      if (++this.envCount > MAX_ENV || info.key.length > 256 || info.val.length > 4096) return reject?.();
      this.env[info.key] = info.val;
      accept?.();
    });
    session.on('signal', (accept: Accept, _reject: Reject, info: { name: string }) => {
      this.up?.signal(info.name);
      accept?.();
    });
    session.on('x11', (accept: Accept, reject: Reject, info: X11Info) => {
      if (!this.allow.x11) return this.refuse(reject, channelRefusals.notAllowed('X11 forwarding', host.resource.name));
      this.x11 = info;
      accept?.();
    });
    session.on('auth-agent', (accept: Accept, reject: Reject) => {
      if (!this.allow.agent) return this.refuse(reject, channelRefusals.notAllowed('agent forwarding', host.resource.name));
      this.agent = true;
      accept?.();
    });
    session.on('shell', (accept: () => ServerChannel | undefined, reject: Reject) => this.start('shell', accept, reject, ''));
    session.on('exec', (accept: () => ServerChannel | undefined, reject: Reject, info: { command: string }) => this.start('exec', accept, reject, info.command));
    session.on('subsystem', (accept: () => ServerChannel | undefined, reject: Reject, info: { name: string }) =>
      this.start('subsystem', accept, reject, info.name),
    );
    session.on('close', () => this.gone());
  }

  /** A terminal the user is looking at: a shell, or a command with a pty. */
  get interactive(): boolean {
    return !this.closed && !!this.ch && (this.kind === 'shell' || !!this.pty);
  }

  /** The in-band warning before expiry. */
  warn(message: string): void {
    if (this.interactive) this.ch?.stderr.write(`\r\n*** ${message} ***\r\n`);
  }

  /** Teardown: the reason on stderr, an exit status, and the channel closed. */
  goodbye(message: string): void {
    const ch = this.ch;
    if (!ch || this.closed) return;
    this.closed = true;
    try {
      ch.stderr.write(this.pty || this.kind === 'shell' ? `\r\n*** ${message} ***\r\n` : `${message}\n`);
      ch.exit(255);
      ch.close();
    } catch (err) {
      this.host.log.debug({ err }, 'ssh goodbye on a closing channel');
    }
    this.up?.close();
  }

  private refuse(reject: Reject, message: string): void {
    // Agent requests carry no reply in OpenSSH, so the reason goes out on stderr once a channel exists.
    this.notices.push(message);
    reject?.();
  }

  private start(kind: 'shell' | 'exec' | 'subsystem', accept: () => ServerChannel | undefined, reject: Reject, arg: string): void {
    if (this.kind || this.closed) return reject?.();
    this.kind = kind;
    const ch = accept();
    if (!ch) return;
    this.ch = ch;
    for (const n of this.notices.splice(0)) ch.stderr.write(this.pty ? `${n}\r\n` : `${n}\n`);
    ch.on('error', (err: Error) => this.host.log.debug({ err }, 'client channel error'));
    ch.once('close', () => this.gone());
    const cb = (err: Error | undefined, up?: ClientChannel): void => this.opened(kind, err, up);
    const { upstream } = this.host;
    try {
      const opts: ExecOptions & { agentForward?: boolean } = {};
      if (this.envCount) opts.env = this.env;
      if (this.x11) opts.x11 = { single: this.x11.single, screen: this.x11.screen, protocol: this.x11.protocol, cookie: this.x11.cookie };
      if (this.agent) opts.agentForward = true;
      const pty = this.pty ? { rows: this.pty.rows, cols: this.pty.cols, height: this.pty.height, width: this.pty.width, term: this.pty.term, modes: this.pty.modes } : undefined;
      if (kind === 'shell') upstream.shell(pty ?? false, opts, cb);
      else if (kind === 'exec') upstream.exec(arg, pty ? { ...opts, pty } : opts, cb);
      else upstream.subsys(arg, cb);
    } catch (err) {
      cb(err as Error);
    }
  }

  private opened(kind: string, err: Error | undefined, up: ClientChannel | undefined): void {
    const ch = this.ch;
    if (!ch) return;
    if (err || !up) {
      if (this.closed) return;
      const what = kind === 'exec' ? 'the command' : kind === 'shell' ? 'a shell' : `subsystem`;
      ch.stderr.write(`Gatehouse: ${this.host.resource.name} refused ${what}: ${err?.message ?? 'no channel'}\r\n`);
      this.exit = { code: 255 };
      this.finish();
      return;
    }
    if (this.closed) {
      up.close();
      return;
    }
    this.up = up;
    const s = this.host.session;
    ch.pipe(up);
    up.pipe(ch, { end: false });
    up.stderr.pipe(ch.stderr, { end: false });
    ch.on('data', (b: Buffer) => void (s.bytesIn += b.length));
    up.on('data', (b: Buffer) => void (s.bytesOut += b.length));
    up.stderr.on('data', (b: Buffer) => void (s.bytesOut += b.length));
    up.on('exit', (code: number | null, signal?: string, dump?: boolean, desc?: string) => {
      this.exit = code !== null && code !== undefined ? { code } : { signal: signal ?? 'SIGKILL', dump: !!dump, desc: desc ?? '' };
    });
    up.on('error', (e: Error) => this.host.log.debug({ err: e }, 'target channel error'));
    up.once('close', () => this.finish());
    if (this.pty) up.setWindow(this.pty.rows, this.pty.cols, this.pty.height, this.pty.width);
  }

  /** The target side is done: deliver what is buffered, then exit status, EOF and close. */
  private finish(): void {
    const ch = this.ch;
    if (!ch || this.closed) return;
    whenFlushed(ch, () => {
      if (this.closed) return;
      const e = this.exit;
      try {
        if (e && 'code' in e) ch.exit(e.code);
        else if (e) ch.exit(e.signal.replace(/^SIG/, ''), e.dump, e.desc);
      } catch (err) {
        // An exit signal OpenSSH does not know; the close below still ends the command.
        this.host.log.debug({ err }, 'could not forward exit');
      }
      ch.end();
    });
  }

  private gone(): void {
    if (!this.closed) {
      this.closed = true;
      this.up?.close();
    }
    this.onGone(this);
  }
}
