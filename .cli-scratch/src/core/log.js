import { pino } from 'pino';
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
export function createLogger(options = {}) {
    return pino({
        level: process.env.GATEHOUSE_LOG_LEVEL ?? options.level ?? 'info',
        redact: { paths: REDACT_PATHS, censor: '[redacted]' },
        ...options,
    });
}
/** A logger that writes nothing, for tests and library use. */
export const silentLogger = pino({ level: 'silent' });
//# sourceMappingURL=log.js.map