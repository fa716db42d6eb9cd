#!/usr/bin/env node
/**
 * Summarises a V8 CPU profile of a tunnel process (`node bench/tunnel/run.mjs --cpu-prof DIR`
 * writes one for the loopback gateway and one for its iperf3 `gatehouse tunnel` CLI): which
 * process it is, the busy share of the samples, the functions with the most self time, and
 * the inclusive time of the stages of a carried byte (WebSocket framing and masking, reads,
 * writes, the relay handlers, GC).
 *
 *   node bench/tunnel/profile-top.mjs FILE.cpuprofile [--top 20]
 *
 * Percentages are of the busy samples (everything but `(idle)`), so the time the process
 * waited while the other paths ran does not dilute them.
 */
import { nameOf, NODE_STAGES, summarise, urlOf } from '../lib/profile.mjs';

const inWs = (file) => (n) => urlOf(n).includes(`node_modules/ws/lib/${file}`);

summarise({
  usage: 'node bench/tunnel/profile-top.mjs',
  top: 20,
  describe: (urls) => ([...urls].some((u) => u.includes('protocols/tunnel/session')) ? 'the gateway (gatehouse serve)'
    : [...urls].some((u) => u.includes('cli/actions/tunnel')) ? 'the tunnel CLI (gatehouse tunnel)' : 'unknown process'),
  stages: [
    ['ws Sender (framing, masking, the write)', (n) => inWs('sender.js')(n)],
    ['  masking in JavaScript (buffer-util _mask: client -> gateway frames)', (n) => nameOf(n) === '_mask' && inWs('buffer-util.js')(n)],
    ['ws Receiver (parsing frames, unmasking, delivering messages)', (n) => inWs('receiver.js')(n)],
    ['  unmasking in JavaScript (buffer-util _unmask)', (n) => nameOf(n) === '_unmask' && inWs('buffer-util.js')(n)],
    ['  Buffer concatenation of fragments (buffer-util concat)', (n) => nameOf(n) === 'concat' && inWs('buffer-util.js')(n)],
    ['the door\'s own frames (protocols/tunnel/session.js: the relay handlers) and below', (n) => urlOf(n).includes('protocols/tunnel/session')],
    ['the CLI\'s own frames (src/cli/actions/tunnel.js: carryConnection handlers) and below', (n) => urlOf(n).includes('cli/actions/tunnel')],
    ['Buffer.from (copies of received messages)', (n) => nameOf(n) === 'from' && urlOf(n) === 'node:buffer'],
    ...NODE_STAGES,
  ],
});
