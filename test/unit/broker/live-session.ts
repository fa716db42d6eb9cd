import type { SessionHandle } from '../../../src/broker/adapter.js';
import type { Broker } from '../../../src/broker/broker.js';
import type { TerminationReason } from '../../../src/core/model.js';

/** A door's side of a session that records what the broker told it. */
export class RecordingHandle implements SessionHandle {
  warnings: string[] = [];
  closed: Array<{ reason: TerminationReason; message: string }> = [];
  warn(message: string): void {
    this.warnings.push(message);
  }
  close(reason: TerminationReason, message: string): void {
    this.closed.push({ reason, message });
  }
}

/** Opens a postgres session on prod-pg for `user` and takes it live with a RecordingHandle. */
export async function openLive(broker: Broker, user = 'alice') {
  const r = await broker.open({ user, resource: 'prod-pg', protocol: 'postgres', client: '127.0.0.1:5555', mfa: { kind: 'none' } });
  if (!r.ok) throw new Error(r.denial.message);
  const handle = new RecordingHandle();
  await r.session.live(handle);
  return { session: r.session, handle };
}
