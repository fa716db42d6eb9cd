/**
 * vitest globalSetup: installs every Debian package the suite needs (test/targets/install.sh)
 * once, before any worker starts. The target scripts would otherwise apt-get install on
 * demand from several workers at once and collide on dpkg's lock.
 *
 * The installer's progress (and apt's output) goes to stderr as it happens; a failure stops
 * the run with that output in the error. GATEHOUSE_SKIP_INSTALL=1 skips the step (a machine
 * that cannot install, and only runs tests that need no server or browser).
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const INSTALL_SCRIPT = fileURLToPath(new URL('./targets/install.sh', import.meta.url));
/** Lines of output kept for the error message; apt's reason is at the end. */
const KEEP_LINES = 200;

export default async function setup(): Promise<void> {
  if (process.env.GATEHOUSE_SKIP_INSTALL === '1') {
    process.stderr.write('[global-setup] GATEHOUSE_SKIP_INSTALL=1: not installing test packages\n');
    return;
  }
  const output: string[] = [];
  const code = await new Promise<number | string>((resolve, reject) => {
    // stdin closed: a package that asks a question must fail rather than hang the run.
    const child = spawn('bash', [INSTALL_SCRIPT], { stdio: ['ignore', 'pipe', 'pipe'] });
    const forward = (chunk: Buffer): void => {
      process.stderr.write(chunk);
      output.push(chunk.toString());
    };
    child.stdout.on('data', forward);
    child.stderr.on('data', forward);
    child.once('error', reject);
    child.once('close', (status, signal) => resolve(status ?? signal ?? 'unknown'));
  });
  if (code !== 0) {
    const tail = output.join('').split('\n').slice(-KEEP_LINES).join('\n');
    throw new Error(
      `test/targets/install.sh failed (exit ${code}); the test packages could not be installed.\n` +
        `Run it by hand (as root) to retry, or set GATEHOUSE_SKIP_INSTALL=1 to skip this step.\n${tail}`,
    );
  }
}
