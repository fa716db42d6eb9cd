import { escapeInline } from './format.js';

/**
 * Exit codes are part of the CLI contract: scripts branch on them, so each one names a
 * class of failure rather than a particular message.
 */
export const ExitCodes = {
  ok: 0,
  generic: 1,
  usage: 2,
  auth: 3,
  forbidden: 4,
  notFound: 5,
  conflict: 6,
} as const;
export type ExitCode = (typeof ExitCodes)[keyof typeof ExitCodes];

/**
 * A failure the CLI reports as one line. `code` is the API's error code (FORBIDDEN,
 * CHECKED_OUT, ...) or a CLI-side one (USAGE, NETWORK, ...); callers branch on it. The
 * message often carries the gateway's own sentence, so its control characters, newlines
 * included, are shown escaped: the line stays one line and cannot rewrite the terminal.
 */
export class CliError extends Error {
  readonly code: string;
  readonly exitCode: ExitCode;
  /** HTTP status when the failure came from the API. */
  readonly status?: number;
  readonly details?: Record<string, unknown>;

  constructor(code: string, message: string, opts: { exitCode?: ExitCode; status?: number; details?: Record<string, unknown> } = {}) {
    super(escapeInline(message));
    this.name = 'CliError';
    this.code = code;
    this.exitCode = opts.exitCode ?? exitCodeFor(opts.status, code);
    if (opts.status !== undefined) this.status = opts.status;
    if (opts.details) this.details = opts.details;
  }
}

/** A mistake on the command line: wrong flag, missing or malformed argument. */
export function usageError(message: string): CliError {
  return new CliError('USAGE', message, { exitCode: ExitCodes.usage });
}

/** Maps an API failure to an exit code; the status decides, the code refines it. */
export function exitCodeFor(status: number | undefined, code: string): ExitCode {
  if (code === 'USAGE') return ExitCodes.usage;
  if (code === 'LOCKED') return ExitCodes.auth;
  switch (status) {
    case 401:
      return ExitCodes.auth;
    case 403:
      return ExitCodes.forbidden;
    case 404:
      return ExitCodes.notFound;
    case 409:
      return ExitCodes.conflict;
    default:
      return ExitCodes.generic;
  }
}
