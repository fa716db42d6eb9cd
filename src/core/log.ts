import { createRequire } from 'node:module';
import { pino, type DestinationStream, type Logger, type LoggerOptions } from 'pino';
import type { PrettyOptions } from 'pino-pretty';
import { GatehouseError } from './errors.js';

export type { Logger };

/** Paths that must never reach a log line, whatever object they sit in. */
export const REDACT_PATHS = [
  'password',
  '*.password',
  'secret',
  '*.secret',
  'totpSecret',
  '*.totpSecret',
  'token',
  '*.token',
  'ticket',
  '*.ticket',
  'privateKey',
  '*.privateKey',
  'credentials',
  '*.credentials',
  'authorization',
  '*.authorization',
  'req.headers.authorization',
  'req.headers.cookie',
  'masterKey',
  // A listener's TLS ticket key (ListenerConfig `tls.ticketKey`): whoever holds it can resume as the gateway.
  'ticketKey',
  '*.ticketKey',
  '*.*.ticketKey',
];

/** `json`: one JSON object a line, for collectors. `pretty`: a line a person reads on a terminal. */
export const LogFormats = ['json', 'pretty'] as const;
export type LogFormat = (typeof LogFormats)[number];

export interface LogOutput {
  /** Default: the process default (setDefaultLogFormat), else GATEHOUSE_LOG_FORMAT, else pretty on a terminal and JSON elsewhere. */
  format?: LogFormat;
  /** Where the lines go; default stderr. Tests pass a stream to read them. */
  destination?: DestinationStream & { isTTY?: boolean };
}

let processFormat: LogFormat | undefined;

/**
 * The format of every logger created from now on without one of its own: `gatehouse serve
 * --log-format` sets it once, so loggers made deep inside (the PostgreSQL store's) follow.
 */
export function setDefaultLogFormat(format: LogFormat | undefined): void {
  processFormat = format;
}

/** Chosen format, else GATEHOUSE_LOG_FORMAT, else by whether the logs go to a terminal. */
export function resolveLogFormat(chosen: LogFormat | undefined, env: NodeJS.ProcessEnv, toTerminal: boolean): LogFormat {
  if (chosen) return chosen;
  const fromEnv = env.GATEHOUSE_LOG_FORMAT;
  if (fromEnv === undefined || fromEnv === '') return toTerminal ? 'pretty' : 'json';
  if (!(LogFormats as readonly string[]).includes(fromEnv)) {
    throw new GatehouseError('CONFIG_INVALID', `GATEHOUSE_LOG_FORMAT: '${fromEnv}' is not one of ${LogFormats.join(', ')}`);
  }
  return fromEnv as LogFormat;
}

/**
 * Logs go to stderr so that what a command prints for people stays on stdout. On a
 * terminal they are pretty (pino-pretty, a runtime dependency, loaded only then); anywhere
 * else JSON, one object a line.
 */
export function createLogger(options: LoggerOptions = {}, output: LogOutput = {}): Logger {
  const toTerminal = output.destination ? output.destination.isTTY === true : process.stderr.isTTY === true;
  const format = resolveLogFormat(output.format ?? processFormat, process.env, toTerminal);
  const settings: LoggerOptions = {
    level: process.env.GATEHOUSE_LOG_LEVEL ?? options.level ?? 'info',
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    ...options,
  };
  if (format === 'json') return pino(settings, output.destination ?? pino.destination(2));
  return pino(settings, prettyStream(output.destination, toTerminal && !process.env.NO_COLOR));
}

/**
 * pino-pretty as an in-process stream, not a worker-thread transport: lines are written in
 * order and synchronously, so nothing is lost when the process exits right after logging.
 * Redaction has already happened: the stream gets pino's finished JSON line.
 */
function prettyStream(destination: LogOutput['destination'], colorize: boolean): DestinationStream {
  const require = createRequire(import.meta.url);
  const pretty = require('pino-pretty') as (opts: PrettyOptions) => DestinationStream;
  return pretty({
    destination: destination ?? 2,
    sync: true,
    colorize,
    translateTime: 'SYS:HH:MM:ss.l',
    ignore: 'pid,hostname',
    singleLine: true,
  });
}

/** A logger that writes nothing, for tests and library use. */
export const silentLogger: Logger = pino({ level: 'silent' });
