import type { Duplex } from 'node:stream';

/** The peer went away, errored or sent too much before the handshake step it owed. */
export class PeerClosedError extends Error {
  readonly code = 'PEER_CLOSED';
  constructor(message: string, cause?: unknown) {
    super(message);
    this.name = 'PeerClosedError';
    if (cause !== undefined) this.cause = cause;
  }
}

/** Returns a decoded value and how many bytes it took, or undefined when more bytes are needed. */
export type Decoder<T> = (buf: Buffer) => { value: T; size: number } | undefined;

/**
 * Pull-style reading for the handshake phases of the database gateways: waits for whatever
 * `decode` accepts. `detach` hands the stream (and any bytes read ahead) to the next owner,
 * the TLS layer or the relay, which then read push-style with no buffering of their own.
 */
export class StreamReader {
  private buf: Buffer = Buffer.alloc(0);
  private wake: (() => void) | undefined;
  private failure: Error | undefined;
  private attached = true;

  constructor(
    readonly stream: Duplex,
    private readonly name: string,
    /** Handshakes are short; a peer that streams more than this before being answered is cut off. */
    private readonly maxBuffered = 256 * 1024,
  ) {
    stream.on('data', this.onData);
    stream.on('end', this.onEnd);
    stream.on('close', this.onEnd);
    stream.on('error', this.onError);
  }

  get detached(): boolean {
    return !this.attached;
  }

  /** Bytes received and not yet decoded. */
  get buffered(): number {
    return this.buf.length + this.stream.readableLength;
  }

  /** The next value `decode` accepts; a decoder's own error propagates as it is. */
  async read<T>(decode: Decoder<T>): Promise<T> {
    for (;;) {
      const r = decode(this.buf);
      if (r) {
        this.buf = this.buf.subarray(r.size);
        return r.value;
      }
      if (this.failure) throw this.failure;
      await new Promise<void>((resolve) => (this.wake = resolve));
      this.wake = undefined;
    }
  }

  /** Fails a pending read (a timeout or a teardown while the handshake is still running). */
  abort(err: Error): void {
    this.failure ??= err;
    this.wake?.();
  }

  /** Stops reading; returns the bytes read ahead of the last decoded value. */
  detach(): Buffer {
    if (this.attached) {
      this.attached = false;
      this.stream.pause();
      this.stream.off('data', this.onData);
      this.stream.off('end', this.onEnd);
      this.stream.off('close', this.onEnd);
      this.stream.off('error', this.onError);
    }
    const rest = this.buf;
    this.buf = Buffer.alloc(0);
    return rest;
  }

  private readonly onData = (chunk: Buffer): void => {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    if (this.buf.length > this.maxBuffered) {
      this.stream.pause();
      this.failure ??= new PeerClosedError(`${this.name} sent more than ${this.maxBuffered} bytes during the handshake`);
    }
    this.wake?.();
  };

  private readonly onEnd = (): void => {
    this.failure ??= new PeerClosedError(`${this.name} closed the connection`);
    this.wake?.();
  };

  private readonly onError = (err: Error): void => {
    this.failure ??= new PeerClosedError(`${this.name} connection failed: ${err.message}`, err);
    this.wake?.();
  };
}
