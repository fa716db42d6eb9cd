/**
 * An ldapts client that also reports what ldapts itself ignores: a Notice of Disconnection
 * (message id 0). The notice is read off the client's own socket with ldapts's BER reader,
 * so a test sees exactly what the client received, parsed by the client library's code.
 */
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { BerReader, Client } from 'ldapts';

export interface Notice {
  code: number;
  message: string;
  /** performance.now() when it arrived. */
  at: number;
}

export interface WatchedClient {
  client: Client;
  /** Resolves with the first Notice of Disconnection, or undefined when the socket closed without one. */
  notice: Promise<Notice | undefined>;
  /** Resolves (performance.now()) when the client's socket closed. */
  closed: Promise<number>;
}

/** Reads every complete LDAPMessage in `buf`; returns notices (message id 0) and the unread rest. */
function notices(buf: Buffer): { found: Notice[]; rest: Buffer } {
  const found: Notice[] = [];
  let pos = 0;
  while (buf.length - pos >= 2) {
    const reader = new BerReader(buf.subarray(pos));
    if (reader.readSequence() === null) break;
    const len = reader.length;
    // ldapts reads the length 84 ff ff ff ff as -1; a negative length is never a message of ours.
    if (len < 0 || reader.offset + len > buf.length - pos) break;
    const end = pos + reader.offset + len;
    const id = reader.readInt();
    if (id === 0 && reader.readSequence() === 0x78) {
      const code = reader.readEnumeration() ?? -1;
      reader.readString();
      found.push({ code, message: reader.readString() ?? '', at: performance.now() });
    }
    pos = end;
  }
  return { found, rest: buf.subarray(pos) };
}

/** An ldapts client over LDAPS to `port`, trusting `ca`, watched for a notice of disconnection. */
export function watchedLdapsClient(port: number, ca: string): WatchedClient {
  let resolveNotice!: (n: Notice | undefined) => void;
  let resolveClosed!: (at: number) => void;
  const notice = new Promise<Notice | undefined>((r) => (resolveNotice = r));
  const closed = new Promise<number>((r) => (resolveClosed = r));
  const client = new Client({
    url: `ldaps://127.0.0.1:${port}`,
    tlsOptions: { ca },
    connectTimeout: 10_000,
    createSecureConnection: ((...args: Parameters<typeof tlsConnect>) => {
      const sock: TLSSocket = tlsConnect(...args);
      let buf: Buffer = Buffer.alloc(0);
      sock.on('data', (chunk: Buffer) => {
        const r = notices(Buffer.concat([buf, chunk]));
        buf = r.rest;
        if (r.found[0]) resolveNotice(r.found[0]);
      });
      sock.once('close', () => {
        resolveNotice(undefined);
        resolveClosed(performance.now());
      });
      return sock;
    }) as typeof tlsConnect,
  });
  return { client, notice, closed };
}
