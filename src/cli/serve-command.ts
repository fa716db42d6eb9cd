import { Option, type Command } from 'commander';
import type { LogFormat } from '../core/log.js';
import type { ServeFlags } from './actions/serve.js';

/**
 * `gatehouse serve`: runs the gateway in the foreground until SIGINT/SIGTERM. The command
 * line only: the gateway (store, doors, API) is loaded when serve runs, never for the CLI's
 * other commands.
 */
export function registerServe(program: Command): void {
  program
    .command('serve')
    .description('run the gateway (API, WebSocket, web vault and protocol listeners)')
    .option('--config <file>', 'config file (YAML)')
    .option('--data <dir>', 'data directory (SQLite, master key; certs inside it)')
    .option('--policies <dir>', 'policy directory to load at start')
    .option('--listen <name=host:port>', 'listener address (repeatable; port 0 picks a free one)', (v: string, acc: string[]) => [...acc, v], [] as string[])
    .option('--admin-password-file <file>', 'first run: take the admin password from this file')
    .option('--store <url>', 'keep state in PostgreSQL (postgres://...) to share it between gateways; default: SQLite in the data dir')
    .option('--allow-plaintext-on-loopback', 'let clients on loopback listeners connect without TLS (local tools, tests); listeners off loopback stay TLS-only')
    .option('--workers <n>', 'data-path worker processes for the doors that can use them (PostgreSQL, MySQL): a number or auto (one per core); default 1, every connection in this process')
    .addOption(new Option('--log-format <format>', 'logs on stderr as JSON lines or pretty text (default: GATEHOUSE_LOG_FORMAT, else pretty on a terminal, JSON elsewhere)').choices(['json', 'pretty'] satisfies LogFormat[]))
    .action(async (o: ServeFlags) => (await import('./actions/serve.js')).serve(o));
}
