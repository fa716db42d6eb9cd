import { readFile } from 'node:fs/promises';
import { InvalidArgumentError, type Command } from 'commander';
import { CliError } from './cli-error.js';
import type { ApiClient } from './client.js';
import { gatehouseHome, readSavedLogin, resolveConnection, type Connection, type GlobalOptions } from './config.js';
import type { CliIo } from './io.js';

/** What every command action gets: the outside world, and the gateway connection on demand. */
export interface Ctx {
  io: CliIo;
  home: string;
  now(): Date;
  /** IANA zone for local times; undefined means the system zone. */
  zone: string | undefined;
  /** Writes text to stdout, adding the final newline if missing. */
  print(text: string): void;
  /** Raw JSON for `--json`: stable, pretty, one document. */
  printJson(value: unknown): void;
  connection(cmd: Command): Promise<Connection>;
  client(cmd: Command): Promise<ApiClient>;
}

export function createContext(io: CliIo): Ctx {
  const home = gatehouseHome(io.env);
  const ctx: Ctx = {
    io,
    home,
    now: () => io.clock.now(),
    zone: io.zone,
    print: (text) => io.stdout(text.endsWith('\n') ? text : `${text}\n`),
    printJson: (value) => io.stdout(`${JSON.stringify(value, null, 2)}\n`),
    connection: async (cmd) => resolveConnection(cmd.optsWithGlobals<GlobalOptions>(), io.env, await readSavedLogin(home)),
    client: async (cmd) => {
      const conn = await ctx.connection(cmd);
      // Loaded here, not at start-up: commands that never call the gateway do without it.
      const { ApiClient } = await import('./client.js');
      const opts: ConstructorParameters<typeof ApiClient>[0] = { server: conn.server };
      if (conn.token) opts.token = conn.token;
      if (conn.ca) opts.caPem = await readCa(conn.ca);
      return new ApiClient(opts);
    },
  };
  return ctx;
}

export async function readCa(path: string): Promise<string> {
  try {
    const pem = await readFile(path, 'utf8');
    if (!pem.includes('-----BEGIN CERTIFICATE-----')) throw new Error('no PEM certificate in it');
    return pem;
  } catch (e) {
    throw new CliError('CONFIG', `cannot use CA file ${path}: ${(e as Error).message}`);
  }
}

/** `/resources/prod pg` → `/resources/prod%20pg`: names go into paths one segment each. */
export function seg(name: string): string {
  return encodeURIComponent(name);
}

/** Commander accumulator for repeatable options (`--team a --team b`). */
export function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

/** Commander argument parser for a whole number within bounds; a bad value is a usage error. */
export function intArg(min: number, max: number = Number.MAX_SAFE_INTEGER): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < min || n > max) {
      throw new InvalidArgumentError(`must be a whole number from ${min}${max === Number.MAX_SAFE_INTEGER ? '' : ` to ${max}`}`);
    }
    return n;
  };
}
