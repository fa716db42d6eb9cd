import { SystemClock } from '../core/clock.js';
import { CliError, usageError } from './cli-error.js';
export function processIo() {
    return {
        stdout: (t) => process.stdout.write(t),
        stderr: (t) => process.stderr.write(t),
        stdin: process.stdin,
        env: process.env,
        clock: new SystemClock(),
    };
}
/** All of stdin, minus the one trailing newline `echo` or a here-string adds. */
export async function readStdinSecret(io, what) {
    const chunks = [];
    for await (const c of io.stdin)
        chunks.push(typeof c === 'string' ? Buffer.from(c) : c);
    const text = Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '');
    if (text === '')
        throw usageError(`no ${what} on stdin`);
    return text;
}
/**
 * Asks on the terminal without echoing what is typed. Refuses when stdin is not a TTY,
 * since a pipe would silently feed the secret from wherever it comes from.
 */
export async function promptHidden(io, question, flagHint) {
    const input = io.stdin;
    if (!input.isTTY || typeof input.setRawMode !== 'function') {
        throw usageError(`cannot prompt for it: stdin is not a terminal; use ${flagHint}`);
    }
    io.stderr(question);
    input.setRawMode(true);
    input.resume();
    try {
        return await new Promise((resolve, reject) => {
            let typed = '';
            const onData = (chunk) => {
                for (const ch of chunk.toString('utf8')) {
                    if (ch === '\r' || ch === '\n') {
                        finish();
                        resolve(typed);
                        return;
                    }
                    if (ch === '\u0003' || ch === '\u0004') {
                        finish();
                        reject(new CliError('CANCELLED', 'cancelled', { exitCode: 1 }));
                        return;
                    }
                    if (ch === '\u007f' || ch === '\b')
                        typed = typed.slice(0, -1);
                    else
                        typed += ch;
                }
            };
            const finish = () => {
                input.removeListener('data', onData);
                io.stderr('\n');
            };
            input.on('data', onData);
        });
    }
    finally {
        input.setRawMode(false);
        input.pause();
    }
}
//# sourceMappingURL=io.js.map