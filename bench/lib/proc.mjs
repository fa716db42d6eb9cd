/**
 * What /proc says of a process's CPU: per process (utime, stime) and per thread (schedstat's
 * nanoseconds, with its sleeps and preemptions). Shared by the benches of every door.
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

const TICK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
/** utime and stime of a process, in microseconds. */
export function procCpuSplit(pid) {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return { user: (Number(f[11]) / TICK) * 1e6, system: (Number(f[12]) / TICK) * 1e6 };
}

/**
 * CPU time of each thread of a process so far, in ns (/proc/PID/task/TID/schedstat), with its
 * name, and how often it slept (voluntary context switches) and was preempted (involuntary ones).
 */
export function threadsCpuNs(pid) {
  const threads = [];
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const ns = Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
      const status = readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8');
      const switches = (kind) => Number(new RegExp(`^${kind}_ctxt_switches:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? 0);
      threads.push({ tid: Number(tid), name: readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim(), ns, sleeps: switches('voluntary'), preempted: switches('nonvoluntary') });
    } catch {
      // The thread ended between the listing and the read.
    }
  }
  return threads;
}

/** CPU time so far of each process whose name starts with `prefix` (all its threads), in ns, by pid. */
export function commandCpuNs(prefix) {
  const byPid = new Map();
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      if (readFileSync(`/proc/${pid}/comm`, 'utf8').startsWith(prefix)) byPid.set(Number(pid), threadsCpuNs(pid).reduce((a, t) => a + t.ns, 0));
    } catch {
      // The process ended between the listing and the read.
    }
  }
  return byPid;
}

/** utime + stime of a process, in microseconds. */
export function procCpuMicros(pid) {
  const { user, system } = procCpuSplit(pid);
  return user + system;
}
