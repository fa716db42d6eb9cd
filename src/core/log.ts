import { pino, type Logger, type LoggerOptions } from 'pino';

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
];

/** Logs go to stderr so that what a command prints for people stays on stdout. */
export function createLogger(options: LoggerOptions = {}): Logger {
  return pino(
    {
      level: process.env.GATEHOUSE_LOG_LEVEL ?? options.level ?? 'info',
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      ...options,
    },
    pino.destination(2),
  );
}

/** A logger that writes nothing, for tests and library use. */
export const silentLogger: Logger = pino({ level: 'silent' });
