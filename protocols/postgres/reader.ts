import type { Duplex } from 'node:stream';

/** The peer went away (or errored) before sending what the handshake waited for. */
export class StreamClosedError extends Error {
  readonly code = 'PG_STREAM_CLOSED';
  constructor(message: string, cause?: unknown) {
    super(message);
    this.name = 'StreamClosedError';
    if (cause !== undefined) this.cause = cause;
  }
}

export type Decoder<T> = (buf: Buffer) => { value: T; size: number } | undefined;

/**
 * Pull-style reading for the handshake phases only: waits for whatever `decode` accepts.
 * `detach` hands the stream (and any bytes read ahead) to the next owner, the TLS layer or
 * the relay, which then read push-style with no buffering of their own.
 */
export class StreamReader {
  private buf: Buffer = Buffer.alloc(0);
  private wake: (() => void) | undefined;
  private failure: Error | undefined;
  private attached = true;

  constructor(
    private readonly stream: Duplex,
    private readonly name: string,
    /** Handshakes are short; a peer that streams more than this before being answered is cut off. */
    private readonly maxBuffered = 256 * 1024,
  ) {
    stream.on('data', this.onData);
    stream.on('end', this.onEnd);
    stream.on('close', this.onEnd);
    stream.on('error', this.onError);
  }

  /** Bytes received and not yet decoded. */
  get buffered(): number {
    return this.buf.length + this.stream.readableLength;
  }

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

  /** Stops reading; returns the bytes read ahead of the last decoded packet. */
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
      this.failure ??= new StreamClosedError(`${this.name} sent more than ${this.maxBuffered} bytes during the handshake`);
    }
    this.wake?.();
  };

  private readonly onEnd = (): void => {
    this.failure ??= new StreamClosedError(`${this.name} closed the connection`);
    this.wake?.();
  };

  private readonly onError = (err: Error): void => {
    this.failure ??= new StreamClosedError(`${this.name} connection failed: ${err.message}`, err);
    this.wake?.();
  };
}
