/**
 * The benches' raw PostgreSQL clients read the gateway's messages through this: the framing of
 * the backend's messages (type, length, body) from a stream's `data` events.
 */

/** Calls `onMessage(type, body)` for each whole message read from `stream`, in order. */
export function eachMessage(stream, onMessage) {
  let buf = Buffer.alloc(0);
  stream.on('data', (chunk) => {
    buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
    while (buf.length >= 5) {
      const len = buf.readInt32BE(1);
      if (buf.length < 1 + len) break;
      const type = buf[0];
      const body = buf.subarray(5, 1 + len);
      buf = buf.subarray(1 + len);
      onMessage(type, body);
    }
  });
}
