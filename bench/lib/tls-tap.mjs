/**
 * A counting TCP tap for a PostgreSQL client TLS leg: listens on a port, relays every
 * connection to `port` byte for byte, and counts the TLS records in each direction by their
 * 5-byte headers (content type, version, length), which are on the wire in clear even though
 * the payload is encrypted. The PostgreSQL SSLRequest (8 bytes from the client) and the
 * server's one-byte 'S' come before TLS and are skipped. The tap does not change the record
 * boundaries: those are the sender's.
 */
import { connect, createServer } from 'node:net';

const TYPES = { 20: 'change_cipher_spec', 21: 'alert', 22: 'handshake', 23: 'application_data' };

/** A parser of TLS record headers over a byte stream, after `skip` bytes of preamble. */
function recordCounter(skip, counts) {
  let body = 0;
  const head = Buffer.alloc(5);
  let have = 0;
  return (chunk) => {
    let i = 0;
    if (skip > 0) {
      const n = Math.min(skip, chunk.length);
      skip -= n;
      i = n;
    }
    while (i < chunk.length) {
      if (body > 0) {
        const n = Math.min(body, chunk.length - i);
        body -= n;
        i += n;
        continue;
      }
      const n = Math.min(5 - have, chunk.length - i);
      chunk.copy(head, have, i, i + n);
      have += n;
      i += n;
      if (have === 5) {
        const type = TYPES[head[0]] ?? `type ${head[0]}`;
        counts[type] = (counts[type] ?? 0) + 1;
        counts.bytes = (counts.bytes ?? 0) + 5 + head.readUInt16BE(3);
        body = head.readUInt16BE(3);
        have = 0;
      }
    }
  };
}

/** Destroys both sockets when either errors or closes: a relay's two legs live and die together. */
export function together(a, b) {
  const end = () => {
    a.destroy();
    b.destroy();
  };
  a.on('error', end).on('close', end);
  b.on('error', end).on('close', end);
}

/** @returns {Promise<{ port: number, counts: { toProxy: object, fromProxy: object }, reset(): void, close(): void }>} */
export async function tlsTap(port, host = '127.0.0.1') {
  const tap = { counts: { toProxy: {}, fromProxy: {} } };
  tap.reset = () => {
    tap.counts = { toProxy: {}, fromProxy: {} };
  };
  const server = createServer((client) => {
    client.setNoDelay(true);
    const up = connect(port, host);
    up.setNoDelay(true);
    const toProxy = recordCounter(8, tap.counts.toProxy);
    const fromProxy = recordCounter(1, tap.counts.fromProxy);
    client.on('data', (d) => {
      toProxy(d);
      up.write(d);
    });
    up.on('data', (d) => {
      fromProxy(d);
      client.write(d);
    });
    together(client, up);
  });
  await new Promise((r) => server.listen(0, host, r));
  tap.port = server.address().port;
  tap.close = () => server.close();
  return tap;
}
