/**
 * FeedGuard: while the cluster event feed is down, every live session is re-checked at once
 * and then on a fixed beat, once more when the feed is back, and rarely as a safety net
 * while it is up. Driven by the fake clock.
 */
import { describe, expect, it } from 'vitest';
import { FeedGuard } from '../../../src/broker/feed-guard.js';
import { FakeClock } from '../../../src/core/clock.js';
import { silentLogger } from '../../../src/core/log.js';

function setup(opts: { pollMs?: number; safetyNetMs?: number } = {}) {
  const clock = new FakeClock();
  const calls: string[] = [];
  let release: (() => void) | undefined;
  let hold = false;
  const guard = new FeedGuard(
    async (reason) => {
      calls.push(reason);
      if (hold) await new Promise<void>((r) => (release = r));
    },
    clock,
    silentLogger,
    { pollMs: 1000, safetyNetMs: 30_000, ...opts },
  );
  return {
    clock, calls, guard,
    holdNext: () => void (hold = true),
    release: () => {
      hold = false;
      release?.();
    },
  };
}

describe('the feed guard', () => {
  it('re-checks at once when the feed is lost, every poll interval while it stays down, and once more when it is back', async () => {
    const { clock, calls, guard } = setup();
    guard.start();
    guard.feed('down', 'listening connection closed');
    await guard.idle();
    expect(calls).toEqual(['event feed lost (listening connection closed)']);

    clock.advance(999);
    expect(calls).toHaveLength(1);
    clock.advance(1);
    await guard.idle();
    clock.advance(1000);
    await guard.idle();
    expect(calls).toEqual(['event feed lost (listening connection closed)', 'event feed still down', 'event feed still down']);

    guard.feed('up', 'listening');
    await guard.idle();
    expect(calls.at(-1)).toBe('event feed back');
    clock.advance(29_999);
    expect(calls).toHaveLength(4);
    clock.advance(1);
    await guard.idle();
    expect(calls.at(-1)).toBe('periodic re-check');
  });

  it('does not stack re-checks while one is slow, and runs one more if the feed changes meanwhile', async () => {
    const { clock, calls, guard, holdNext, release } = setup();
    holdNext();
    guard.feed('down', 'no heartbeat for 1003 ms');
    clock.advance(5000); // no timer is armed while the re-check runs
    expect(calls).toHaveLength(1);
    guard.feed('up', 'listening');
    release();
    await guard.idle();
    expect(calls).toEqual(['event feed lost (no heartbeat for 1003 ms)', 'event feed back']);
  });

  it('repeated reports of the same state start nothing new, and a stopped guard re-checks no more', async () => {
    const { clock, calls, guard } = setup({ safetyNetMs: 0 });
    guard.start();
    guard.feed('up', 'listening');
    clock.advance(60_000);
    expect(calls).toEqual([]);
    guard.feed('down', 'a');
    guard.feed('down', 'b');
    await guard.idle();
    expect(calls).toEqual(['event feed lost (a)']);
    guard.stop();
    clock.advance(10_000);
    guard.feed('up', 'listening');
    await guard.idle();
    expect(calls).toHaveLength(1);
    expect(clock.pendingTimers()).toBe(0);
  });
});
