/**
 * A benchmark's helper process (forked with IPC) that answers requests: it sends one first
 * message when it is ready (`first()`), then one answer per request (`ask()`, which rejects
 * when the answer is not ok or the process exits). With `onLine`, its stderr (and that of the
 * processes it forks) is passed on line by line, each line first shown to `onLine` (passStderr).
 * Used by bench/postgres/sessions.mjs.
 */
import { fork } from 'node:child_process';
import { clearTimeout, setTimeout } from 'node:timers';
import { passStderr } from './pg-relays.mjs';

export function helper(path, args = [], execArgv = [], onLine = undefined) {
  const child = fork(path, args, { execArgv, stdio: ['ignore', 'inherit', onLine ? 'pipe' : 'inherit', 'ipc'] });
  if (onLine) passStderr(child, onLine);
  const answers = [];
  let waiting;
  child.on('message', (m) => (waiting ? waiting(m) : answers.push(m)));
  const next = () => (answers.length ? Promise.resolve(answers.shift()) : new Promise((r) => (waiting = (m) => ((waiting = undefined), r(m)))));
  const exited = new Promise((r) => child.once('exit', r));
  // A process that exits before it answers fails the wait instead of leaving it hanging.
  const answer = () => Promise.race([next(), exited.then((code) => ({ ok: false, error: `${path} exited ${code}` }))]);
  return {
    pid: child.pid,
    first: answer,
    async ask(m) {
      child.send(m);
      const a = await answer();
      if (!a.ok) throw new Error(`${path} ${m.cmd}: ${a.error}`);
      return a;
    },
    async stop() {
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
    },
  };
}
