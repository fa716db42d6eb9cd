import type { EphemeralSettings, JitSettings } from '../core/model.js';
import { usageError } from './cli-error.js';

/**
 * `gatehouse resource jit` flags as commander hands them over. `--elevate off` (alone) and
 * `--ephemeral off` clear their part; the ephemeral fields (`--grant`, `--sudo`, `--ou`,
 * `--inheritor`, `--max-connections`) merge onto the ephemeral settings the resource has.
 */
export interface JitFlags {
  ephemeral?: 'on' | 'off';
  grant?: string[];
  sudo?: string;
  ou?: string;
  inheritor?: string;
  maxConnections?: number;
  elevate?: string[];
  json?: boolean;
}

/** The fields of the ephemeral part, as flags give them. */
type EphemeralFields = Partial<EphemeralSettings>;

/** Flags after their own checks, before the resource's current settings are known. */
export interface ParsedJitFlags {
  /** on: turn on (or keep on); off: clear; undefined: as it is, unless fields are given. */
  ephemeral?: 'on' | 'off';
  fields: EphemeralFields;
  /** false: clear; a list: elevate with these. */
  elevate?: string[] | false;
}

export function hasJitFlags(f: JitFlags): boolean {
  return f.ephemeral !== undefined || f.elevate !== undefined || Object.keys(ephemeralFields(f)).length > 0;
}

function ephemeralFields(f: JitFlags): EphemeralFields {
  const out: EphemeralFields = {};
  if (f.grant !== undefined) out.grants = f.grant;
  if (f.sudo !== undefined) out.sudo = f.sudo;
  if (f.ou !== undefined) out.ou = f.ou;
  if (f.inheritor !== undefined) out.inheritor = f.inheritor;
  if (f.maxConnections !== undefined) out.maxConnections = f.maxConnections;
  return out;
}

const FIELD_FLAGS = '--grant, --sudo, --ou, --inheritor and --max-connections';

/** Checks the flags against each other (exit 2 on a mistake), before anything is fetched. */
export function parseJitFlags(f: JitFlags): ParsedJitFlags {
  const fields = ephemeralFields(f);
  const p: ParsedJitFlags = { fields };
  if (f.ephemeral !== undefined) p.ephemeral = f.ephemeral;
  if (f.ephemeral === 'off' && Object.keys(fields).length > 0) throw usageError(`--ephemeral off cannot be combined with ${FIELD_FLAGS}`);
  if (f.elevate !== undefined) {
    if (f.elevate.includes('off')) {
      if (f.elevate.length > 1) throw usageError('--elevate off cannot be combined with roles or groups to elevate with');
      p.elevate = false;
    } else {
      p.elevate = f.elevate;
    }
  }
  const ephemeralAsked = f.ephemeral === 'on' || Object.keys(fields).length > 0;
  if (ephemeralAsked && Array.isArray(p.elevate)) {
    throw usageError('ephemeral accounts and --elevate cannot be combined: a session logs in as one account (a temporary one, or the vaulted one elevated)');
  }
  return p;
}

/**
 * The settings to send: the flags on top of the resource's current ones. Turning one part on
 * while the resource uses the other is a usage error naming the flag that switches.
 */
export function mergeJitFlags(resource: string, current: JitSettings | null, p: ParsedJitFlags): JitSettings {
  const next: JitSettings = { ...(current ?? {}) };
  const fieldsGiven = Object.keys(p.fields).length > 0;
  if (p.ephemeral === 'off') delete next.ephemeral;
  if (p.ephemeral === 'on' || fieldsGiven) {
    if (!next.ephemeral && p.ephemeral !== 'on') throw usageError(`${resource} has no ephemeral accounts: add --ephemeral on to turn them on`);
    next.ephemeral = { grants: [], ...(next.ephemeral ?? {}), ...p.fields };
    if (next.elevate && p.elevate === undefined) {
      throw usageError(`${resource} elevates its vaulted account now: add --elevate off to use ephemeral accounts instead`);
    }
  }
  if (p.elevate === false) delete next.elevate;
  else if (p.elevate) {
    if (next.ephemeral && p.ephemeral !== 'off') throw usageError(`${resource} uses ephemeral accounts now: add --ephemeral off to elevate the vaulted account instead`);
    next.elevate = { grants: p.elevate };
  }
  return next;
}
