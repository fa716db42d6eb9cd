/**
 * A TLS 1.3 client whose records, once it is logged in, are sealed and opened by the test
 * itself: Node's TLSSocket runs the handshake and the login over a tap that sees every byte,
 * then the test takes the socket over with the same traffic secrets (the TLSSocket's `keylog`)
 * and the sequence numbers the tap counted, and can send what no stock client sends: a
 * KeyUpdate, a record split into single bytes, a bad tag, an oversized record, a stray
 * handshake message (RFC 8446 5.2, 7.1-7.2). A test tool for the gateway's lean record layer
 * (native/pg-relay.c), never a target.
 */
import { createCipheriv, createDecipheriv, createHmac, type CipherGCMTypes } from 'node:crypto';
import { connect as netConnect, type Socket } from 'node:net';
import { Duplex } from 'node:stream';
import { connect as tlsConnect, type ConnectionOptions, type TLSSocket } from 'node:tls';
import { sslRequest } from '../../protocols/postgres/codec.js';

export const enum ContentType { Alert = 21, Handshake = 22, ApplicationData = 23 }

const SUITES: Record<string, { cipher: CipherGCMTypes | 'chacha20-poly1305'; hash: 'sha256' | 'sha384'; keyLength: number }> = {
  TLS_AES_128_GCM_SHA256: { cipher: 'aes-128-gcm', hash: 'sha256', keyLength: 16 },
  TLS_AES_256_GCM_SHA384: { cipher: 'aes-256-gcm', hash: 'sha384', keyLength: 32 },
  TLS_CHACHA20_POLY1305_SHA256: { cipher: 'chacha20-poly1305', hash: 'sha256', keyLength: 32 },
};

function expandLabel(hash: string, secret: Buffer, label: string, length: number): Buffer {
  const full = Buffer.from(`tls13 ${label}`);
  const info = Buffer.concat([Buffer.from([length >> 8, length & 0xff, full.length]), full, Buffer.from([0, 1])]);
  return createHmac(hash, secret).update(info).digest().subarray(0, length);
}

/** One direction's keys: seals or opens its records in order. */
export class RecordKeys {
  private key!: Buffer;
  private iv!: Buffer;
  seq = 0n;

  constructor(
    private readonly suite: (typeof SUITES)[string],
    private secret: Buffer,
  ) {
    this.derive();
  }

  private derive(): void {
    this.key = expandLabel(this.suite.hash, this.secret, 'key', this.suite.keyLength);
    this.iv = expandLabel(this.suite.hash, this.secret, 'iv', 12);
    this.seq = 0n;
  }

  /** The next secret (a KeyUpdate sent or read). */
  update(): void {
    this.secret = expandLabel(this.suite.hash, this.secret, 'traffic upd', this.secret.length);
    this.derive();
  }

  private nonce(): Buffer {
    const n = Buffer.from(this.iv);
    const s = Buffer.alloc(8);
    s.writeBigUInt64BE(this.seq);
    for (let i = 0; i < 8; i++) n[4 + i]! ^= s[i]!;
    return n;
  }

  /** One record: `content` with its inner type, `padding` zeros after it; `tamper` flips a tag bit. */
  seal(type: number, content: Buffer, opts: { padding?: number; tamper?: boolean } = {}): Buffer {
    const inner = Buffer.concat([content, Buffer.from([type]), Buffer.alloc(opts.padding ?? 0)]);
    const header = Buffer.from([23, 3, 3, (inner.length + 16) >> 8, (inner.length + 16) & 0xff]);
    const c = createCipheriv(this.suite.cipher, this.key, this.nonce(), { authTagLength: 16 } as never) as ReturnType<typeof createCipheriv> & { setAAD(b: Buffer): void; getAuthTag(): Buffer };
    c.setAAD(header);
    const body = Buffer.concat([c.update(inner), c.final()]);
    const tag = c.getAuthTag();
    if (opts.tamper) tag[0]! ^= 1;
    this.seq++;
    return Buffer.concat([header, body, tag]);
  }

  /** Opens one whole record; throws when it does not authenticate. */
  open(record: Buffer): { type: number; content: Buffer } {
    const header = record.subarray(0, 5);
    const body = record.subarray(5, record.length - 16);
    const d = createDecipheriv(this.suite.cipher, this.key, this.nonce(), { authTagLength: 16 } as never) as ReturnType<typeof createDecipheriv> & { setAAD(b: Buffer): void; setAuthTag(b: Buffer): void };
    d.setAAD(header);
    d.setAuthTag(record.subarray(record.length - 16));
    const inner = Buffer.concat([d.update(body), d.final()]);
    this.seq++;
    let n = inner.length;
    while (n > 0 && inner[n - 1] === 0) n--;
    return { type: inner[n - 1]!, content: inner.subarray(0, n - 1) };
  }
}

/** Whole TLS records at the front of `buf`, and the rest. */
function records(buf: Buffer): { whole: Buffer[]; rest: Buffer } {
  const whole: Buffer[] = [];
  let at = 0;
  while (buf.length - at >= 5 && buf.length - at >= 5 + buf.readUInt16BE(at + 3)) {
    const end = at + 5 + buf.readUInt16BE(at + 3);
    whole.push(buf.subarray(at, end));
    at = end;
  }
  return { whole, rest: buf.subarray(at) };
}

/** A KeyUpdate handshake message; `requested`: the peer must answer with its own. */
export const keyUpdate = (requested: boolean): Buffer => Buffer.from([24, 0, 0, 1, requested ? 1 : 0]);

/**
 * The client: `tls` for the login, then `takeOver()`, after which `send`, `sendRaw` and
 * `read` speak records on the raw socket.
 */
export class TappedTls {
  readonly tls: TLSSocket;
  private readonly secrets = new Map<string, Buffer>();
  /** Outer type 23 records the client wrote: its Finished, then application data. */
  private sealedOut = 0;
  private outPending = Buffer.alloc(0);
  private taken = false;
  private inbox = Buffer.alloc(0);
  private wake: (() => void) | undefined;
  closed = false;
  tx: RecordKeys | undefined;
  rx: RecordKeys | undefined;
  private serverRecordsBefore = 0;
  private receivedSealed = 0;
  private inPending = Buffer.alloc(0);

  private constructor(
    readonly raw: Socket,
    options: ConnectionOptions,
  ) {
    const tap = new Duplex({
      write: (chunk: Buffer, _enc, done) => {
        if (this.taken) return done();
        this.countOut(chunk);
        raw.write(chunk, () => done());
      },
      read: () => undefined,
      final: (done) => done(),
    });
    raw.on('data', (d: Buffer) => {
      if (this.taken) {
        this.inbox = Buffer.concat([this.inbox, d]);
      } else {
        this.countIn(d);
        tap.push(d);
      }
      this.wake?.();
    });
    raw.on('close', () => {
      this.closed = true;
      this.wake?.();
    });
    raw.on('error', () => undefined);
    this.tls = tlsConnect({ socket: tap, minVersion: 'TLSv1.3', ...options });
    this.tls.on('keylog', (line: Buffer) => {
      const [label, , hex] = line.toString().trim().split(' ');
      if (label && hex) this.secrets.set(label, Buffer.from(hex, 'hex'));
    });
    this.tls.on('error', () => undefined);
  }

  private countOut(chunk: Buffer): void {
    const { whole, rest } = records(Buffer.concat([this.outPending, chunk]));
    this.sealedOut += whole.filter((r) => r[0] === 23).length;
    this.outPending = Buffer.from(rest);
  }

  private countIn(chunk: Buffer): void {
    const { whole, rest } = records(Buffer.concat([this.inPending, chunk]));
    this.receivedSealed += whole.filter((r) => r[0] === 23).length;
    this.inPending = Buffer.from(rest);
  }

  /** TCP, the PostgreSQL SSLRequest and its 'S', then the handshake. */
  static async connect(port: number, options: ConnectionOptions): Promise<TappedTls> {
    const raw = netConnect({ port, host: '127.0.0.1' });
    raw.setNoDelay(true);
    await new Promise<void>((r, j) => raw.once('connect', () => r()).once('error', j));
    raw.write(sslRequest());
    const s = await new Promise<Buffer>((r) => raw.once('data', r));
    if (s.toString() !== 'S') throw new Error(`no 'S' to the SSLRequest: ${s.toString('hex')}`);
    const t = new TappedTls(raw, options);
    await new Promise<void>((r, j) => t.tls.once('secureConnect', () => r()).once('close', () => j(new Error('closed during the handshake'))));
    return t;
  }

  /**
   * From here the test seals and opens the records. The TLSSocket must be quiet: everything it
   * wrote sent, everything the gateway sent read (the caller waited for its answer).
   */
  takeOver(): void {
    const suite = SUITES[this.tls.getCipher().standardName];
    const c = this.secrets.get('CLIENT_TRAFFIC_SECRET_0');
    const s = this.secrets.get('SERVER_TRAFFIC_SECRET_0');
    if (!suite || !c || !s) throw new Error(`cannot take over: suite ${this.tls.getCipher().standardName}, secrets ${[...this.secrets.keys()].join(', ')}`);
    if (this.outPending.length || this.inPending.length) throw new Error('cannot take over in the middle of a record');
    this.taken = true;
    this.tx = new RecordKeys(suite, c);
    this.tx.seq = BigInt(this.sealedOut - 1);
    this.rx = new RecordKeys(suite, s);
    // The server's count is found by the first record it sends (its handshake flight's records are not told apart here).
    this.serverRecordsBefore = this.receivedSealed;
    this.rx.seq = -1n;
  }

  /** Seals and sends one record. */
  send(type: number, content: Buffer, opts?: { padding?: number; tamper?: boolean }): Buffer {
    const r = this.tx!.seal(type, content, opts);
    this.raw.write(r);
    return r;
  }

  sendRaw(bytes: Buffer): void {
    this.raw.write(bytes);
  }

  /** Opens the next record (waiting for it), or undefined once the socket closed without one. */
  async read(ms = 5_000): Promise<{ type: number; content: Buffer } | undefined> {
    const deadline = Date.now() + ms;
    for (;;) {
      const { whole } = records(this.inbox);
      const first = whole[0];
      if (first) {
        this.inbox = this.inbox.subarray(first.length);
        return this.open(first);
      }
      if (this.closed) return undefined;
      if (Date.now() > deadline) throw new Error('no record from the gateway in time');
      await new Promise<void>((r) => {
        this.wake = r;
        setTimeout(r, 50);
      });
      this.wake = undefined;
    }
  }

  private open(record: Buffer): { type: number; content: Buffer } {
    if (this.rx!.seq >= 0n) return this.rx!.open(record);
    // The first record after the take-over: its sequence number is among those the server's
    // sealed records so far may have used.
    for (let seq = 0; seq <= this.serverRecordsBefore; seq++) {
      this.rx!.seq = BigInt(seq);
      try {
        return this.rx!.open(record);
      } catch {
        // another count
      }
    }
    throw new Error('the first record after the take-over opens under no sequence number');
  }

  /** Application data until `done(bytes)` holds; other records are returned with it. */
  async readUntil(done: (data: Buffer) => boolean, ms = 5_000): Promise<{ data: Buffer; others: { type: number; content: Buffer }[] }> {
    let data = Buffer.alloc(0);
    const others: { type: number; content: Buffer }[] = [];
    while (!done(data)) {
      const r = await this.read(ms);
      if (!r) throw new Error(`closed after ${data.length} bytes of data`);
      if (r.type === ContentType.ApplicationData) data = Buffer.concat([data, r.content]);
      else others.push(r);
    }
    return { data, others };
  }

  destroy(): void {
    this.tls.destroy();
    this.raw.destroy();
  }
}
