/** Errors across the primary–worker channel (see messages.ts). */
import { UpstreamError, type TargetSaid, type UpstreamErrorKind } from '../broker/upstream-error.js';
import type { WireError } from './messages.js';

export function toWire(e: unknown): WireError {
  if (e instanceof UpstreamError) return { name: e.name, message: e.message, kind: e.kind, targetSaid: e.targetSaid, ...(e.hint ? { hint: e.hint } : {}) };
  if (!(e instanceof Error)) return { name: 'Error', message: String(e) };
  const fields = Object.fromEntries(Object.entries(e).filter((kv): kv is [string, string | number | boolean] => ['string', 'number', 'boolean'].includes(typeof kv[1])));
  return { name: e.name, message: e.message, fields };
}

/** The error a worker reported, rebuilt: an UpstreamError as such, anything else with its fields. */
export function fromWire(e: WireError): Error {
  if (e.name === 'UpstreamError' && e.kind) return new UpstreamError(e.kind as UpstreamErrorKind, e.message, e.targetSaid as TargetSaid | undefined, e.hint);
  return Object.assign(new Error(e.message), e.fields ?? {}, { name: e.name });
}
