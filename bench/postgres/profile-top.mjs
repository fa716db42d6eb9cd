#!/usr/bin/env node
/**
 * Summarises a V8 CPU profile (`node --cpu-prof`) of a PostgreSQL relay, the gateway's
 * (bench/postgres/gateway.mjs) or the bare pipe's (bench/lib/bare-tls-pipe.mjs), both started
 * through bench/lib/pg-relays.mjs with `nodeArgs: ['--cpu-prof', '--cpu-prof-dir=DIR']` while
 * pgbench -S runs: the busy share of the samples, the functions with the most self time, and
 * the inclusive time of the stages of a relayed chunk.
 *
 *   node bench/postgres/profile-top.mjs FILE.cpuprofile [--top 25]
 *
 * Percentages are of the busy samples (everything but `(idle)`); compare the two relays'
 * profiles by the stages every Node process has (the last rows) and by what only one has.
 */
import { nameOf, NODE_STAGES, summarise, urlOf } from '../lib/profile.mjs';

const pg = (file) => (n) => urlOf(n).includes(`protocols/postgres/${file}`);

summarise({
  usage: 'node bench/postgres/profile-top.mjs',
  top: 25,
  describe: (urls) => ([...urls].some((u) => u.includes('protocols/postgres/')) ? 'Gatehouse' : 'bare pipe'),
  stages: [
    ['Relay (protocols/postgres/relay.ts, every frame)', pg('relay.js')],
    ['  Relay.onClientData', (n) => nameOf(n) === 'onClientData'],
    ['  Relay.onUpstreamData', (n) => nameOf(n) === 'onUpstreamData'],
    ['Framer.feed (protocols/postgres/codec.ts)', (n) => nameOf(n) === 'feed' && pg('codec.js')(n)],
    ['login (PgSession and what it calls, protocols/postgres/session.ts)', pg('session.js')],
    ['stream pipe (ondata of Readable.pipe, the bare pipe\'s relay)', (n) => nameOf(n) === 'ondata'],
    ...NODE_STAGES,
  ],
});
