import type { Duplex } from 'node:stream';
import { decodePacket, encodePacket, MAX_HANDSHAKE_PACKET, type Packet } from './codec.js';

/** The peer went away, errored or took too long before sending what the handshake waited for. */
export class PeerClosedError extends Error {
  readonly code = 'MY_PEER_CLOSED';
  constructor(message: string, cause?: unknown) {
    super(message);
    this.name = 'PeerClosedError';
    if (cause !== undefined) this.cause = cause;
  }
}

/**
 * Pull-style packet reading for the handshake phases only. `detach` hands the stream, and
 * the bytes read ahead, to the next owner (the TLS layer or the relay), which then reads
 * push-style without buffering of its own.
 */
export class PacketReader {
  private buf: Buffer = Buffer.alloc(0);
  private wake: (() => void) | undefined;
  private failure: Error | undefined;
  private attached = true;
  /** Sequence id of the last packet read or written on this leg. */
  seq = 0;

  constructor(
    readonly stream: Duplex,
    private readonly name: string,
    private readonly maxPacket = MAX_HANDSHAKE_PACKET,
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
    return this.buf.length;
  }

  /** The next packet; throws MysqlDecodeError on a malformed or oversized one. */
  async read(): Promise<Packet> {
    for (;;) {
      let r: ReturnType<typeof decodePacket>;
      try {
        r = decodePacket(this.buf, this.maxPacket);
      } catch (err) {
        // An answer to a refused packet still carries the sequence id after the packet's own.
        if (this.buf.length >= 4) this.seq = this.buf[3]!;
        throw err;
      }
      if (r) {
        this.buf = this.buf.subarray(r.size);
        this.seq = r.value.seq;
        return r.value;
      }
      if (this.failure) throw this.failure;
      await new Promise<void>((resolve) => (this.wake = resolve));
      this.wake = undefined;
    }
  }

  /** Writes a packet with the next sequence id. */
  write(payload: Buffer): void {
    this.seq = (this.seq + 1) & 0xff;
    this.stream.write(encodePacket(this.seq, payload));
  }

  /** Starts a new command phase: the next packet written carries sequence id 0. */
  resetSeq(): void {
    this.seq = 0xff;
  }

  /** Fails a pending read (a timeout or a teardown while the handshake is still running). */
  abort(err: Error): void {
    this.failure ??= err;
    this.wake?.();
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
    // A peer streaming far past one handshake packet is not doing a handshake.
    if (this.buf.length > this.maxPacket * 2 + 8) {
      this.stream.pause();
      this.failure ??= new PeerClosedError(`${this.name} sent more than ${this.maxPacket * 2} bytes during the handshake`);
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
