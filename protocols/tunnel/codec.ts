/**
 * The tunnel door's wire: two WebSocket paths on the API listener and the JSON messages of
 * the control socket. A tunnel is opened on the control socket (one per `gatehouse tunnel`),
 * and each TCP connection the user's client makes to the local listener is carried over a
 * data socket of its own, authenticated by the tunnel's token.
 */

/** Where the control socket is opened: `?login=USER:RESOURCE`, the secret in the Authorization header. */
export const OPEN_PATH = '/api/v1/tunnels/open';
/** Where each carried connection goes: `Authorization: Bearer <tunnel token>`. */
export const CONNECT_PATH = '/api/v1/tunnels/connect';
/** The scheme of the control socket's Authorization header: a launch ticket or the gateway password. */
export const SECRET_SCHEME = 'Gatehouse-Secret';

/** WebSocket close codes: 1008 (policy) when the gateway ends the tunnel, with the reason. */
export const Close = {
  ended: 1008,
  normal: 1000,
  /** The target closed or could not be reached for one carried connection. */
  target: 1011,
} as const;

/** Server → client messages on the control socket. */
export type ControlMessage =
  | {
    type: 'ready';
    tunnel: string;
    /** Authenticates the data sockets of this tunnel only. */
    token: string;
    resource: string;
    protocol: string;
    /** When the grant, lease or schedule window ends the tunnel, if it does. */
    deadline?: string;
    /** Carried connections allowed at once (the resource's limit), if any. */
    connectionLimit?: number;
    /** The vaulted login for the user's own client, only where the resource allows handing it out (RDP). */
    credentials?: { login: string; password?: string };
  }
  | { type: 'warning'; message: string }
  | { type: 'ended'; reason: string; message: string };

/** A refusal before the upgrade, as the HTTP body the CLI prints. */
export interface RefusalBody {
  error: { code: string; message: string; hint?: string };
}

/** `?login=` of the open path: `USER:RESOURCE`, or undefined. */
export function loginOf(url: URL): string | undefined {
  const login = url.searchParams.get('login');
  return login && login.length <= 200 ? login : undefined;
}

/** The secret of `Authorization: Gatehouse-Secret <secret>` (or Bearer, for the data path). */
export function credentialOf(header: string | undefined, scheme: string): string | undefined {
  if (!header) return undefined;
  const prefix = `${scheme} `;
  return header.startsWith(prefix) ? header.slice(prefix.length).trim() : undefined;
}
