import { createHash, createHmac, pbkdf2, randomBytes, timingSafeEqual } from 'node:crypto';

/** Why the upstream SCRAM exchange failed; the message names the step, never the secret. */
export class ScramError extends Error {
  readonly code = 'PG_SCRAM';
  constructor(message: string) {
    super(message);
    this.name = 'ScramError';
  }
}

const hmac = (key: Buffer, data: string | Buffer): Buffer => createHmac('sha256', key).update(data).digest();

/** Salted passwords computed lately, by a digest of (password, salt, iterations); oldest first. */
const salted = new Map<string, Buffer>();
/** Logins kept: one per vaulted login and target in use is plenty. */
const SALTED_KEPT = 256;

/**
 * SCRAM's SaltedPassword, PBKDF2 with the target's salt and iteration count (4096 by default,
 * ~0.7 ms of CPU): the same vaulted login to the same target gives the same value every time,
 * so it is computed once and kept, under a digest rather than the password itself. What is kept
 * lets its holder log in as that login, as the vaulted password in this process already does.
 */
async function saltedPassword(password: string, salt: Buffer, iterations: number): Promise<Buffer> {
  const key = createHash('sha256').update(password).update('\0').update(salt).update(`\0${iterations}`).digest('base64');
  const hit = salted.get(key);
  if (hit) {
    salted.delete(key);
    salted.set(key, hit);
    return hit;
  }
  const value = await new Promise<Buffer>((resolve, reject) => pbkdf2(password, salt, iterations, 32, 'sha256', (err, k) => (err ? reject(err) : resolve(k))));
  salted.set(key, value);
  if (salted.size > SALTED_KEPT) salted.delete(salted.keys().next().value!);
  return value;
}

/**
 * PostgreSQL stores SCRAM verifiers of the SASLprep'd password and falls back to the raw
 * bytes when SASLprep fails. NFKC is SASLprep's normalisation step; ASCII passwords, the
 * usual vaulted kind, are unchanged either way.
 */
function prepare(password: string): string {
  return /^[\x20-\x7e]*$/.test(password) ? password : password.normalize('NFKC');
}

function attributes(msg: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of msg.split(',')) {
    const eq = part.indexOf('=');
    if (eq === 1) out.set(part[0]!, part.slice(2));
  }
  return out;
}

/**
 * The client side of SCRAM-SHA-256 (RFC 5802/7677) as PostgreSQL speaks it: no channel
 * binding (gs2 header `n,,`), empty user name (the server uses the startup user).
 */
export class ScramClient {
  static readonly MECHANISM = 'SCRAM-SHA-256';
  private readonly nonce = randomBytes(18).toString('base64');
  private readonly clientFirstBare = `n=,r=${this.nonce}`;
  private serverSignature: Buffer | undefined;

  constructor(private readonly password: string) {}

  clientFirst(): Buffer {
    return Buffer.from(`n,,${this.clientFirstBare}`);
  }

  /** Answers server-first with client-final (the proof). */
  async clientFinal(serverFirst: string): Promise<Buffer> {
    const a = attributes(serverFirst);
    const nonce = a.get('r');
    const salt = a.get('s');
    const iterations = Number(a.get('i'));
    if (!nonce || !nonce.startsWith(this.nonce) || nonce.length === this.nonce.length) throw new ScramError('server nonce does not extend ours');
    if (!salt) throw new ScramError('server sent no salt');
    if (!Number.isInteger(iterations) || iterations < 1 || iterations > 10_000_000) throw new ScramError('bad iteration count');
    const salted = await saltedPassword(prepare(this.password), Buffer.from(salt, 'base64'), iterations);
    const clientKey = hmac(salted, 'Client Key');
    const storedKey = createHash('sha256').update(clientKey).digest();
    const withoutProof = `c=biws,r=${nonce}`;
    const authMessage = `${this.clientFirstBare},${serverFirst},${withoutProof}`;
    const signature = hmac(storedKey, authMessage);
    const proof = Buffer.alloc(32);
    for (let i = 0; i < 32; i++) proof[i] = clientKey[i]! ^ signature[i]!;
    this.serverSignature = hmac(hmac(salted, 'Server Key'), authMessage);
    return Buffer.from(`${withoutProof},p=${proof.toString('base64')}`);
  }

  /** Checks the server's signature: a server that does not know the password cannot fake it. */
  verifyServerFinal(serverFinal: string): void {
    const a = attributes(serverFinal);
    const err = a.get('e');
    if (err) throw new ScramError(`server refused: ${err}`);
    const v = Buffer.from(a.get('v') ?? '', 'base64');
    if (!this.serverSignature || v.length !== 32 || !timingSafeEqual(v, this.serverSignature)) throw new ScramError('server signature does not verify');
  }
}

/** The md5 password response: 'md5' + md5(md5(password + user) + salt). */
export function md5Response(user: string, password: string, salt: Buffer): string {
  const inner = createHash('md5').update(password + user).digest('hex');
  return 'md5' + createHash('md5').update(Buffer.concat([Buffer.from(inner), salt])).digest('hex');
}
