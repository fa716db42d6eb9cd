import { createHmac } from 'node:crypto';
import type { Clock } from '../core/clock.js';
import type { Logger } from '../core/log.js';
import type { EventBus, Notice } from '../events/bus.js';

export interface WebhookConfig {
  url: string;
  /** HMAC-SHA256 key; the signature goes in `x-gatehouse-signature: sha256=<hex>`. */
  secret: string;
  /** Notice kinds to send; all when absent. */
  events?: string[];
}

export interface WebhookOptions {
  clock: Clock;
  log: Logger;
  /** Delays between attempts; the number of entries + 1 is the number of tries. */
  backoffMs?: number[];
  timeoutMs?: number;
  fetchImpl?: typeof fetch;
}

/** A one-line human summary, so Slack-compatible receivers show something useful as `text`. */
export function noticeText(n: Notice): string {
  switch (n.kind) {
    case 'request_created':
      return `${n.request.requester} requests access to ${n.request.resource}${n.request.reason ? `: ${n.request.reason}` : ''}${n.request.ticket ? ` (${n.request.ticket})` : ''}`;
    case 'request_reminder':
      return `Reminder: ${n.request.requester} is waiting for access to ${n.request.resource}`;
    case 'request_escalated':
      return `Escalated: ${n.request.requester}'s request for ${n.request.resource} needs a decision`;
    case 'request_approved':
      return `Access to ${n.request.resource} for ${n.request.requester} was approved`;
    case 'request_denied':
      return `Access to ${n.request.resource} for ${n.request.requester} was denied`;
    case 'request_cancelled':
      return `${n.request.requester} cancelled the request for ${n.request.resource}`;
    case 'request_expired':
      return `The request of ${n.request.requester} for ${n.request.resource} expired`;
    case 'request_reviewed':
      return `${n.request.resource}: an approval was recorded for ${n.request.requester}`;
    case 'lease_checked_out':
      return `${n.lease.holder} checked out ${n.lease.resource}`;
    case 'lease_checked_in':
      return `${n.lease.holder} checked in ${n.lease.resource}`;
    case 'lease_force_checked_in':
      return `${n.lease.resource} was force checked in from ${n.lease.holder} by ${n.lease.endedBy ?? 'an approver'}: ${n.lease.endReason ?? ''}`;
    case 'lease_expired':
      return `The check-out of ${n.lease.resource} by ${n.lease.holder} expired`;
    case 'access_expiring':
      return `Access to ${n.resource} ends at ${n.at.toISOString()}`;
    case 'session_started':
      return `${n.user} connected to ${n.resource}`;
    case 'session_ended':
      return `${n.user}'s session on ${n.resource} ended: ${n.reason}`;
    case 'audit_checkpoint':
      return `Audit checkpoint: entry ${n.checkpoint.seq} of ${n.checkpoint.node} (keep it; gatehouse audit verify --checkpoint FILE checks the chain against it)`;
    default: {
      const never: never = n;
      return String(never);
    }
  }
}

export function signWebhook(secret: string, timestamp: string, body: string): string {
  return 'sha256=' + createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex');
}

/** Sends notices to webhook receivers: JSON, HMAC-signed, retried with backoff. */
export class WebhookSender {
  private readonly backoff: number[];
  private readonly fetchImpl: typeof fetch;
  private unsubscribe: (() => void) | undefined;
  private readonly pending = new Set<Promise<void>>();

  constructor(
    private readonly hooks: WebhookConfig[],
    private readonly opts: WebhookOptions,
  ) {
    this.backoff = opts.backoffMs ?? [1000, 4000, 15_000, 60_000];
    this.fetchImpl = opts.fetchImpl ?? fetch;
  }

  attach(bus: EventBus): void {
    this.unsubscribe = bus.on('notice', (n) => this.send(n));
  }

  send(n: Notice): void {
    const { to, ...rest } = n;
    const body = JSON.stringify({ type: n.kind, text: noticeText(n), recipients: to, ...rest, kind: undefined });
    for (const hook of this.hooks) {
      if (hook.events && !hook.events.includes(n.kind)) continue;
      const p = this.deliver(hook, body, 0).finally(() => this.pending.delete(p));
      this.pending.add(p);
    }
  }

  /** Resolves when every delivery in flight has succeeded or given up (for tests and shutdown). */
  async drain(): Promise<void> {
    while (this.pending.size) await Promise.all([...this.pending]);
  }

  stop(): void {
    this.unsubscribe?.();
  }

  private async deliver(hook: WebhookConfig, body: string, attempt: number): Promise<void> {
    const timestamp = String(Math.floor(this.opts.clock.now().getTime() / 1000));
    try {
      const res = await this.fetchImpl(hook.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-gatehouse-timestamp': timestamp, 'x-gatehouse-signature': signWebhook(hook.secret, timestamp, body) },
        body,
        signal: AbortSignal.timeout(this.opts.timeoutMs ?? 10_000),
      });
      if (res.ok) return;
      throw new Error(`HTTP ${res.status}`);
    } catch (err) {
      const delay = this.backoff[attempt];
      if (delay === undefined) {
        this.opts.log.warn({ err, url: hook.url }, 'webhook delivery gave up');
        return;
      }
      this.opts.log.debug({ err, url: hook.url, attempt }, 'webhook delivery failed; retrying');
      await new Promise<void>((resolve) => this.opts.clock.setTimer(new Date(this.opts.clock.now().getTime() + delay), resolve));
      return this.deliver(hook, body, attempt + 1);
    }
  }
}
