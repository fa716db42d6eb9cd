import { readFile } from 'node:fs/promises';
import { InvalidArgumentError } from 'commander';
import { CliError } from './cli-error.js';
import { ApiClient } from './client.js';
import { gatehouseHome, readSavedLogin, resolveConnection } from './config.js';
export function createContext(io) {
    const home = gatehouseHome(io.env);
    const ctx = {
        io,
        home,
        now: () => io.clock.now(),
        zone: io.zone,
        print: (text) => io.stdout(text.endsWith('\n') ? text : `${text}\n`),
        printJson: (value) => io.stdout(`${JSON.stringify(value, null, 2)}\n`),
        connection: async (cmd) => resolveConnection(cmd.optsWithGlobals(), io.env, await readSavedLogin(home)),
        client: async (cmd) => {
            const conn = await ctx.connection(cmd);
            const opts = { server: conn.server };
            if (conn.token)
                opts.token = conn.token;
            if (conn.ca)
                opts.caPem = await readCa(conn.ca);
            return new ApiClient(opts);
        },
    };
    return ctx;
}
export async function readCa(path) {
    try {
        const pem = await readFile(path, 'utf8');
        if (!pem.includes('-----BEGIN CERTIFICATE-----'))
            throw new Error('no PEM certificate in it');
        return pem;
    }
    catch (e) {
        throw new CliError('CONFIG', `cannot use CA file ${path}: ${e.message}`);
    }
}
/** `/resources/prod pg` → `/resources/prod%20pg`: names go into paths one segment each. */
export function seg(name) {
    return encodeURIComponent(name);
}
/** Commander accumulator for repeatable options (`--team a --team b`). */
export function collect(value, previous) {
    return [...(previous ?? []), value];
}
/** Commander argument parser for a whole number within bounds; a bad value is a usage error. */
export function intArg(min, max = Number.MAX_SAFE_INTEGER) {
    return (value) => {
        const n = Number(value);
        if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < min || n > max) {
            throw new InvalidArgumentError(`must be a whole number from ${min}${max === Number.MAX_SAFE_INTEGER ? '' : ` to ${max}`}`);
        }
        return n;
    };
}
//# sourceMappingURL=context.js.map