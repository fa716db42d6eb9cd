import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, CommanderError } from 'commander';
import { isGatehouseError } from '../core/errors.js';
import { CliError, ExitCodes, exitCodeFor } from './cli-error.js';
import { registerAudit } from './commands/audit.js';
import { registerAuth } from './commands/auth.js';
import { registerLaunch } from './commands/launch.js';
import { registerLeases } from './commands/leases.js';
import { registerKeys } from './commands/keys.js';
import { registerMfa } from './commands/mfa.js';
import { registerPolicy } from './commands/policy.js';
import { registerRequests } from './commands/requests.js';
import { registerResources } from './commands/resources.js';
import { registerSessions } from './commands/sessions.js';
import { registerTokens } from './commands/tokens.js';
import { registerUsers } from './commands/users.js';
import { registerWorkflow } from './commands/workflow.js';
import { createContext, type Ctx } from './context.js';
import { processIo, type CliIo } from './io.js';
import { registerServe } from './serve-command.js';

/**
 * The `gatehouse` command. Returns the exit code instead of exiting, so tests can run it
 * in-process. On failure exactly one line goes to stderr: `gatehouse: <message>`.
 */
export async function main(argv: string[], io: CliIo = processIo()): Promise<number> {
  const ctx = createContext(io);
  const output = { helpOnError: '' };
  const program = buildProgram(ctx, output);
  try {
    await program.parseAsync(argv, { from: 'node' });
    return ExitCodes.ok;
  } catch (e) {
    const { code, message } = describeFailure(e, output.helpOnError);
    if (message !== undefined) io.stderr(`gatehouse: ${message}\n`);
    if (io.env.GATEHOUSE_DEBUG && e instanceof Error && !(e instanceof CommanderError)) io.stderr(`${e.stack ?? ''}\n`);
    return code;
  }
}

/**
 * The whole command line, cheaply: the register* functions declare commands and options
 * only, and each action imports its code (src/cli/actions/*) when it runs. What this file
 * imports loads on every start, `--version` included; test/unit/cli/startup.test.ts keeps
 * the server side out of it.
 */
export function buildProgram(ctx: Ctx, output: { helpOnError: string } = { helpOnError: '' }): Command {
  const program = new Command('gatehouse');
  program
    .description('Gatehouse: just-in-time privileged access gateway')
    .version(packageVersion(), '-V, --version')
    .option('--server <url>', 'gateway API URL (default: GATEHOUSE_SERVER, the saved login, http://127.0.0.1:8080)')
    .option('--ca <file>', "CA certificate to trust for an https:// gateway (default: GATEHOUSE_CA)")
    .showSuggestionAfterError(true)
    .exitOverride()
    .configureOutput({
      writeOut: (s) => ctx.io.stdout(s),
      // Commander writes help here when a command is missing; main() reports one line instead.
      writeErr: (s) => {
        output.helpOnError += s;
      },
      outputError: () => {},
    });

  registerServe(program);
  registerAuth(program, ctx);
  registerUsers(program, ctx);
  registerResources(program, ctx);
  registerWorkflow(program, ctx);
  registerRequests(program, ctx);
  registerLeases(program, ctx);
  registerLaunch(program, ctx);
  // After auth and launch: they create the `token` and `key` commands these add to.
  registerKeys(program, ctx);
  registerTokens(program, ctx);
  registerMfa(program, ctx);
  registerSessions(program, ctx);
  registerAudit(program, ctx);
  registerPolicy(program, ctx);
  return program;
}

function describeFailure(e: unknown, helpOnError: string): { code: number; message?: string } {
  if (e instanceof CommanderError) {
    if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version') return { code: ExitCodes.ok };
    if (e.code === 'commander.help') {
      const usage = /Usage: (\S+(?: \S+)*?) \[options\]/.exec(helpOnError)?.[1] ?? 'gatehouse';
      return { code: ExitCodes.usage, message: `missing command; see ${usage} --help` };
    }
    const text = e.message.replace(/^error: /, '').replace(/\s*\n\s*/g, ' ').trim();
    return { code: ExitCodes.usage, message: text };
  }
  if (e instanceof CliError) return { code: e.exitCode, message: e.message };
  if (isGatehouseError(e)) return { code: exitCodeFor(e.status, e.code), message: e.message };
  const message = e instanceof Error ? e.message : String(e);
  return { code: ExitCodes.generic, message: `internal error: ${message.split('\n')[0]}` };
}

/** The version in package.json, found from this module both under src/ (tests) and dist/src/ (installed). */
function packageVersion(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    const candidate = join(dir, 'package.json');
    if (existsSync(candidate)) {
      const pkg = JSON.parse(readFileSync(candidate, 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'gatehouse' && pkg.version) return pkg.version;
    }
    dir = dirname(dir);
  }
  return 'unknown';
}
