/**
 * Signed checkpoints of the audit chain's head. The chain and its anchor live in the
 * database, so someone who can write the database (and read the audit key) could cut the
 * tail, or rewrite and re-sign every entry. A checkpoint kept somewhere else — the log
 * stream, a webhook receiver, a file an operator copies off the machine — still names the
 * entry that was the head then: `verify` with it finds a chain that no longer has that
 * entry (truncated) or has another one in its place (rewritten).
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';

export const AuditCheckpointSchema = z.strictObject({
  v: z.literal(1),
  /** Sequence number of the head entry when the checkpoint was taken. */
  seq: z.number().int().min(0),
  /** That entry's MAC ('genesis' for an empty log). */
  mac: z.string().min(1).max(128),
  at: z.string().max(40),
  node: z.string().max(128),
  sig: z.string().regex(/^[0-9a-f]{64}$/),
});
export type AuditCheckpoint = z.infer<typeof AuditCheckpointSchema>;

export type CheckpointProblem =
  /** Not signed with this gateway's audit key: forged, altered, or from another installation. */
  | 'checkpoint_signature'
  /** The chain is shorter than the checkpoint: entries were cut from the tail. */
  | 'checkpoint_truncated'
  /** The entry at the checkpoint's seq is another one: the chain was rewritten and re-signed. */
  | 'checkpoint_mismatch';

const body = (c: Omit<AuditCheckpoint, 'sig'>): string => `gatehouse-audit-checkpoint/v1\n${c.seq}\n${c.mac}\n${c.at}\n${c.node}`;

export function signCheckpoint(key: Buffer, c: Omit<AuditCheckpoint, 'sig' | 'v'>): AuditCheckpoint {
  const unsigned = { v: 1 as const, ...c };
  return { ...unsigned, sig: createHmac('sha256', key).update(body(unsigned)).digest('hex') };
}

export function checkpointSignatureValid(key: Buffer, c: AuditCheckpoint): boolean {
  const want = Buffer.from(createHmac('sha256', key).update(body(c)).digest('hex'));
  const got = Buffer.from(c.sig);
  return want.length === got.length && timingSafeEqual(want, got);
}
