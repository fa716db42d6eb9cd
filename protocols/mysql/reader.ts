import type { Duplex } from 'node:stream';
import { PeerClosedError, StreamReader } from '../shared/stream-reader.js';
import { decodePacket, encodePacket, MAX_HANDSHAKE_PACKET, type Packet } from './codec.js';

export { PeerClosedError };

/**
 * Pull-style packet reading for the handshake phases, with the sequence ids MySQL packets
 * carry. `detach` hands the stream, and the bytes read ahead, to the next owner (the TLS
 * layer or the relay).
 */
export class PacketReader {
  /** Sequence id of the last packet read or written on this leg. */
  seq = 0;
  private readonly reader: StreamReader;

  constructor(
    readonly stream: Duplex,
    name: string,
    private readonly maxPacket = MAX_HANDSHAKE_PACKET,
  ) {
    // A peer streaming far past one handshake packet is not doing a handshake.
    this.reader = new StreamReader(stream, name, maxPacket * 2 + 8);
  }

  get detached(): boolean {
    return this.reader.detached;
  }

  /** Bytes received and not yet decoded. */
  get buffered(): number {
    return this.reader.buffered;
  }

  /** The next packet; throws MysqlDecodeError on a malformed or oversized one. */
  async read(): Promise<Packet> {
    const packet = await this.reader.read((buf) => {
      try {
        return decodePacket(buf, this.maxPacket);
      } catch (err) {
        // An answer to a refused packet still carries the sequence id after the packet's own.
        if (buf.length >= 4) this.seq = buf[3]!;
        throw err;
      }
    });
    this.seq = packet.seq;
    return packet;
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
    this.reader.abort(err);
  }

  /** Stops reading; returns the bytes read ahead of the last decoded packet. */
  detach(): Buffer {
    return this.reader.detach();
  }
}
