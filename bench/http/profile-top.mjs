#!/usr/bin/env node
/**
 * Summarises a V8 CPU profile (`node --cpu-prof`, e.g. the gateway's from
 * `node bench/http/run.mjs --cpu-prof DIR`): the busy share of the samples, the functions
 * with the most self time, and the inclusive time of the stages of a proxied request.
 *
 *   node bench/http/profile-top.mjs FILE.cpuprofile [--top 25]
 *
 * Percentages are of the busy samples (everything but `(idle)`), so the idle time of the
 * direct and nginx runs in a whole-bench profile does not dilute them.
 */
import { nameOf, NODE_STAGES, summarise, urlOf } from '../lib/profile.mjs';

summarise({
  usage: 'node bench/http/profile-top.mjs',
  top: 25,
  stages: [
    ['HttpDoor.request (routing, cookie, relay set-up, proxy.web)', (n) => nameOf(n) === 'request' && urlOf(n).includes('protocols/http/session')],
    ['  identityHeaders (the ES256 assertion and the user header)', (n) => nameOf(n) === 'identityHeaders'],
    ['    AssertionSigner.sign', (n) => nameOf(n) === 'sign' && urlOf(n).includes('assertion')],
    ['  upstreamHeaders (the allow-list rebuild)', (n) => nameOf(n) === 'upstreamHeaders'],
    ['rewriteResponse (proxyRes: hop-by-hop, Location, cookies)', (n) => nameOf(n) === 'rewriteResponse'],
    ['http-proxy-3 (all frames under node_modules/http-proxy-3)', (n) => urlOf(n).includes('node_modules/http-proxy-3')],
    ...NODE_STAGES,
    ['parserOnHeadersComplete (request and response heads)', (n) => nameOf(n) === 'parserOnHeadersComplete'],
  ],
});
