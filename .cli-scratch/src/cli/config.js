import { chmod, mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { CliError, usageError } from './cli-error.js';
export const DEFAULT_SERVER = 'http://127.0.0.1:8080';
const CREDENTIALS_FILE = 'credentials.json';
export function gatehouseHome(env) {
    return env.GATEHOUSE_HOME || join(homedir(), '.gatehouse');
}
export function credentialsPath(home) {
    return join(home, CREDENTIALS_FILE);
}
export async function readSavedLogin(home) {
    let text;
    try {
        text = await readFile(credentialsPath(home), 'utf8');
    }
    catch (e) {
        if (e.code === 'ENOENT')
            return undefined;
        throw new CliError('CONFIG', `cannot read ${credentialsPath(home)}: ${e.message}`);
    }
    try {
        const data = JSON.parse(text);
        if (typeof data.server !== 'string' || typeof data.token !== 'string' || typeof data.user !== 'string')
            throw new Error('missing fields');
        return data;
    }
    catch {
        throw new CliError('CONFIG', `${credentialsPath(home)} is damaged; run gatehouse logout, then log in again`);
    }
}
/** Written 0600 in a 0700 directory, atomically, so a token is never readable by others even briefly. */
export async function writeSavedLogin(home, login) {
    await mkdir(home, { recursive: true, mode: 0o700 });
    const target = credentialsPath(home);
    const tmp = `${target}.${process.pid}.tmp`;
    await writeFile(tmp, `${JSON.stringify(login, null, 2)}\n`, { mode: 0o600 });
    await chmod(tmp, 0o600);
    await rename(tmp, target);
}
export async function removeSavedLogin(home) {
    const path = credentialsPath(home);
    try {
        await rm(path);
        return true;
    }
    catch (e) {
        if (e.code === 'ENOENT')
            return false;
        throw e;
    }
}
/**
 * Where to connect and with which token: `--server`, then GATEHOUSE_SERVER, then the saved
 * login, then the default. The saved token is only sent to the server it was issued by, so
 * pointing the CLI elsewhere never leaks it.
 */
export function resolveConnection(opts, env, saved) {
    const server = normaliseServer(opts.server ?? env.GATEHOUSE_SERVER ?? saved?.server ?? DEFAULT_SERVER);
    const sameServer = saved !== undefined && normaliseServer(saved.server) === server;
    const conn = { server };
    const token = env.GATEHOUSE_TOKEN || (sameServer ? saved.token : undefined);
    if (token)
        conn.token = token;
    const ca = opts.ca ?? env.GATEHOUSE_CA ?? (sameServer ? saved.ca : undefined);
    if (ca)
        conn.ca = resolve(ca);
    if (sameServer)
        conn.saved = saved;
    return conn;
}
/** `gw.example:8080` → `http://gw.example:8080`; trailing slashes and paths other than / are refused. */
export function normaliseServer(text) {
    const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(text) ? text : `http://${text}`;
    let url;
    try {
        url = new URL(withScheme);
    }
    catch {
        throw usageError(`--server: "${text}" is not a URL; use e.g. https://gateway.example:8080`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
        throw usageError(`--server: "${text}" must be an http:// or https:// URL`);
    }
    if (url.pathname !== '/' || url.search || url.hash) {
        throw usageError(`--server: "${text}" must not have a path; the API lives under /api/v1 on that server`);
    }
    return url.origin;
}
//# sourceMappingURL=config.js.map