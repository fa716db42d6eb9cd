/**
 * What the relay does when the broker ends a session, on in-memory streams: whether the target
 * still has a request to cancel (an idle session has none, so a mass teardown opens no cancel
 * connection per session), and that the target leg ends only once the client's socket is closed.
 */
import { Duplex } from 'node:stream';
import type { Socket } from 'node:net';
import { describe, expect, it, vi } from 'vitest';
import type { GatewaySession } from '../../../src/broker/port.js';
import { silentLogger } from '../../../src/core/log.js';
import { message, Msg } from '../../../protocols/postgres/codec.js';
import { Relay } from '../../../protocols/postgres/relay.js';

/** One side of a connection: what the relay writes is kept; `push` is what the peer sends. */
function side(): Duplex & { written: Buffer[]; ended: boolean } {
  const d = new Duplex({
    read() {},
    write(chunk: Buffer, _enc, cb) {
      d.written.push(chunk);
      cb();
    },
    final(cb) {
      d.ended = true;
      cb();
    },
  }) as Duplex & { written: Buffer[]; ended: boolean };
  d.written = [];
  d.ended = false;
  return d;
}

const ready = (): Buffer => message(Msg.ReadyForQuery, Buffer.from('I'));
const query = (sql: string): Buffer => message(Msg.Query, Buffer.from(`${sql}\0`));
const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

function relay() {
  const client = side();
  const upstream = side();
  const session = { id: 's1', user: 'alice', resource: { name: 'prod-pg' }, bytesIn: 0, bytesOut: 0, end: () => undefined } as unknown as GatewaySession;
  const finished: Array<{ byBroker: boolean; targetBusy: boolean }> = [];
  const r = new Relay({
    client: client as unknown as Socket, upstream: upstream as unknown as Socket, session, log: silentLogger, auditLimit: 1024, onStatement: undefined,
    onFinish: (byBroker, targetBusy) => void finished.push({ byBroker, targetBusy }),
  });
  r.start(ready(), Buffer.alloc(0), Buffer.alloc(0));
  return { r, client, upstream, finished };
}

describe('PostgreSQL relay teardown', () => {
  it('an idle session (every request answered with ReadyForQuery) has nothing to cancel on the target', async () => {
    const { r, client, upstream, finished } = relay();
    client.push(query('select 1'));
    await tick();
    upstream.push(Buffer.concat([message(0x54, Buffer.alloc(6)), message(0x43, Buffer.from('SELECT 1\0')), ready()]));
    await tick();
    r.close('force_checked_in', 'Gatehouse: bye');
    expect(finished).toEqual([{ byBroker: true, targetBusy: false }]);
  });

  it('a query still running, or the second of two pipelined ones, is cancelled', async () => {
    const a = relay();
    a.client.push(query('select pg_sleep(30)'));
    await tick();
    a.r.close('killed', 'Gatehouse: bye');
    expect(a.finished).toEqual([{ byBroker: true, targetBusy: true }]);

    const b = relay();
    b.client.push(Buffer.concat([query('select 1'), query('select pg_sleep(30)')]));
    await tick();
    b.upstream.push(Buffer.concat([message(0x43, Buffer.from('SELECT 1\0')), ready()]));
    await tick();
    b.r.close('killed', 'Gatehouse: bye');
    expect(b.finished).toEqual([{ byBroker: true, targetBusy: true }]);
  });

  it('the extended protocol counts Sync: busy until its ReadyForQuery is back, idle after', async () => {
    const extended = Buffer.concat([message(Msg.Parse, Buffer.from('\0select 1\0\0\0')), message(0x42, Buffer.alloc(8)), message(0x45, Buffer.alloc(5)), message(Msg.Sync)]);
    const results = Buffer.concat([message(0x31), message(0x32), message(0x43, Buffer.from('SELECT 1\0'))]);
    for (const answered of [false, true]) {
      const { r, client, upstream, finished } = relay();
      client.push(extended);
      await tick();
      upstream.push(answered ? Buffer.concat([results, ready()]) : results);
      await tick();
      r.close('killed', 'Gatehouse: bye');
      expect(finished).toEqual([{ byBroker: true, targetBusy: !answered }]);
    }
  });

  it('the target leg gets its Terminate only after the client socket has closed, and a grace after that', async () => {
    const { r, client, upstream } = relay();
    r.close('force_checked_in', 'Gatehouse: bye');
    await tick();
    expect(client.ended).toBe(true);
    expect(upstream.ended).toBe(false);
    vi.useFakeTimers({ toFake: ['setTimeout'] });
    try {
      const closed = new Promise((r) => client.once('close', r));
      client.destroy();
      await closed;
      vi.advanceTimersByTime(249);
      expect(upstream.ended).toBe(false);
      vi.advanceTimersByTime(1);
    } finally {
      vi.useRealTimers();
    }
    await tick();
    expect(upstream.ended).toBe(true);
    expect(Buffer.concat(upstream.written).subarray(-5)).toEqual(message(Msg.Terminate));
  });
});
