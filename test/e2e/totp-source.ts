import { totpCode } from '../../src/workflow/mfa.js';

const STEP_MS = 30_000;
/** A code of the step before the current one goes out only with this much of the current step left. */
const SPARE_MS = 10_000;

/**
 * TOTP codes for a secret, as an authenticator app gives them to a user who types one per
 * sign-in: never from the same step twice (the gateway refuses a replayed step), and each still
 * valid by the time the gateway checks it. The gateway takes a code of the step before or after
 * its own: the current step's and the next one's stay valid as time moves on; the previous
 * step's only until the current step ends, so it is used only with time to spare, and otherwise
 * the source waits for the next step.
 */
export function totpSource(secret: string): () => Promise<string> {
  const used = new Set<number>();
  return async () => {
    for (;;) {
      const now = Date.now();
      const current = Math.floor(now / STEP_MS);
      const left = (current + 1) * STEP_MS - now;
      for (const offset of left > SPARE_MS ? [0, 1, -1] : [0, 1]) {
        const step = current + offset;
        if (used.has(step)) continue;
        used.add(step);
        return totpCode(secret, new Date(step * STEP_MS));
      }
      await new Promise((r) => setTimeout(r, left + 50));
    }
  };
}
