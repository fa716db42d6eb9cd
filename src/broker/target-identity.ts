/**
 * Whether a target is the one the resource names: the same policy for every door. A target
 * is either verified against a configured CA (the TLS layer checks the chain and the host
 * name; this only insists that it did) or pinned on first use — the first TLS certificate,
 * SSH host key or RSA key seen is recorded on the resource, and any other one is refused
 * with the command that fixes it. A refusal here never reaches the target with a password.
 */
import type { Resource } from '../core/model.js';
import type { WorkflowContext } from '../workflow/context.js';
import { UpstreamError } from './upstream-error.js';

export type TargetIdentity =
  /** TLS verified against a configured CA by the TLS layer (`authorized`), or its error. */
  | { kind: 'ca'; authorized: boolean; error?: string }
  /** A fingerprint to pin on first use, e.g. `tls-sha256:AB:CD...` or `SHA256:...` for SSH. */
  | { kind: 'pin'; what: 'TLS certificate' | 'SSH host key' | 'RSA public key'; fingerprint: string };

export type PinOutcome = 'pinned' | 'match';

/**
 * `retiredPin`: for a resource that no longer exists, the pin it had (the JIT manager
 * removing the accounts a deleted resource left behind); such a target is only ever
 * checked against its old pin, never pinned anew.
 */
export async function verifyTargetIdentity(
  ctx: Pick<WorkflowContext, 'store' | 'audit'>, resourceName: string, id: TargetIdentity, retiredPin?: (name: string) => string | undefined,
): Promise<PinOutcome> {
  switch (id.kind) {
    case 'ca':
      if (!id.authorized) {
        throw new UpstreamError('identity', `its TLS certificate does not verify against the configured CA (${id.error ?? 'unverified'})`, undefined,
          `check the CA configured for ${resourceName} and the certificate the target presents`);
      }
      return 'match';
    case 'pin':
      return pin(ctx, resourceName, id.what, id.fingerprint, retiredPin);
    default: {
      const never: never = id;
      throw new Error(`unknown target identity ${JSON.stringify(never)}`);
    }
  }
}

async function pin(
  ctx: Pick<WorkflowContext, 'store' | 'audit'>, name: string, what: string, fingerprint: string, retiredPin?: (name: string) => string | undefined,
): Promise<PinOutcome> {
  const r: Resource | undefined = await ctx.store.getResource(name);
  if (!r) {
    const old = retiredPin?.(name);
    if (old && old === fingerprint) return 'match';
    throw new UpstreamError('identity', old ? `its ${what} changed since the resource was removed; refusing to connect` : 'the resource no longer exists');
  }
  if (r.hostKeyPin) {
    if (r.hostKeyPin === fingerprint) return 'match';
    throw new UpstreamError('identity', `its ${what} changed (now ${fingerprint}, pinned ${r.hostKeyPin}); refusing to connect`, undefined,
      `after verifying the new ${what} with the owner of ${name}, an administrator re-pins it: set hostKeyPin: ${fingerprint} for ${name} in its policy file`);
  }
  await ctx.store.putResource({ ...r, hostKeyPin: fingerprint });
  await ctx.audit.record('system', 'resource.pin_identity', name, { what, fingerprint });
  return 'pinned';
}
