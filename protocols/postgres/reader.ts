/** The handshake reader is shared with the other database gateways. */
export { PeerClosedError, StreamReader, type Decoder } from '../shared/stream-reader.js';
