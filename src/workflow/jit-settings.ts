import { z } from 'zod';
import { ValidationError } from '../core/errors.js';
import type { JitSettings, Protocol } from '../core/model.js';
import { CONTROL_CHARACTER_MESSAGE, hasControlCharacter } from './plain-text.js';

/**
 * Ephemeral accounts and elevation: the schema shared by the API, the CLI and policy files,
 * and the per-target checks of the names in it. Names end up in SQL, shell commands and DNs
 * on the target, so each is held to the target's own identifier rules here, before any
 * provisioner quotes it again.
 */

/** The protocols whose doors can make temporary accounts and elevate the vaulted one. */
export const JIT_PROTOCOLS: readonly Protocol[] = ['postgres', 'mysql', 'ssh', 'ldap'];

const Text = z.string().min(1, 'must not be empty').max(512, 'must be at most 512 characters').refine((s) => !hasControlCharacter(s), CONTROL_CHARACTER_MESSAGE);

export const EphemeralSettingsSchema = z.strictObject({
  grants: z.array(Text).max(32, 'at most 32 roles or groups').meta({ description: 'Roles (PostgreSQL, MySQL), groups (Linux) or group DNs (LDAP) the temporary account gets' }),
  sudo: Text.optional().meta({ description: 'Linux: sudo commands for the account: ALL, or absolute command paths separated by commas' }),
  ou: Text.optional().meta({ description: 'LDAP: the DN of the OU temporary entries are made under' }),
  inheritor: Text.optional().meta({ description: 'PostgreSQL: the role that inherits objects the account created (default gatehouse_inheritor)' }),
  maxConnections: z.number().int().min(1).max(1000).optional().meta({ description: 'MySQL: MAX_USER_CONNECTIONS of the account (default 10)' }),
});

export const ElevateSettingsSchema = z.strictObject({
  grants: z.array(Text).min(1, 'name at least one role or group').max(32, 'at most 32 roles or groups'),
});

export const JitSettingsSchema = z.strictObject({
  ephemeral: EphemeralSettingsSchema.optional(),
  elevate: ElevateSettingsSchema.optional(),
});

/** SQL role names the gateway will quote: letters, digits, `_`, `$`, `-`, not starting with a digit. */
const SQL_ROLE = /^[A-Za-z_][A-Za-z0-9_$-]{0,62}$/;
/** Linux group names (shadow-utils' default rule). */
const UNIX_GROUP = /^[a-z_][a-z0-9_-]{0,31}$/;
/** A DN as `attr=value,...` with no characters that need escaping beyond `\,`. */
const DN = /^[A-Za-z][A-Za-z0-9-]*=[^=,+"<>;\\]+(,[A-Za-z][A-Za-z0-9-]*=[^=,+"<>;\\]+)*$/;
/** One sudo command: an absolute path with plain arguments (no sudoers metacharacters). */
const SUDO_COMMAND = /^\/[A-Za-z0-9_./-]+( [A-Za-z0-9_./=:@+-]+)*$/;

function checkNames(field: string, names: readonly string[], rule: RegExp, what: string): void {
  names.forEach((n, i) => {
    if (!rule.test(n)) throw new ValidationError(`${field}[${i}]`, `'${n}' is not a valid ${what}`);
  });
  if (new Set(names).size !== names.length) throw new ValidationError(field, 'lists a name twice');
}

/**
 * Validates JIT settings for a resource of `protocol`. An object with neither part (or
 * `undefined`) clears them: the result is then undefined.
 */
export function validateJit(input: unknown, protocol: Protocol): JitSettings | undefined {
  if (input === undefined || input === null) return undefined;
  const parsed = JitSettingsSchema.safeParse(input);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new ValidationError(issue.path.join('.') || 'jit', issue.message);
  }
  const jit = parsed.data as JitSettings;
  if (!jit.ephemeral && !jit.elevate) return undefined;
  if (jit.ephemeral && jit.elevate) {
    throw new ValidationError('jit', 'choose ephemeral accounts or elevation: a session logs in as one account, so both at once would elevate an account nobody uses');
  }
  if (!JIT_PROTOCOLS.includes(protocol)) {
    throw new ValidationError('jit', `${protocol} resources have no ephemeral accounts or elevation (only ${JIT_PROTOCOLS.join(', ')})`);
  }
  const e = jit.ephemeral;
  const grants = (field: string, names: readonly string[]): void => {
    switch (protocol) {
      case 'postgres':
      case 'mysql':
        return checkNames(field, names, SQL_ROLE, 'role name');
      case 'ssh':
        return checkNames(field, names, UNIX_GROUP, 'Linux group name');
      case 'ldap':
        return checkNames(field, names, DN, 'group DN');
      default:
        return undefined;
    }
  };
  if (e) {
    grants('ephemeral.grants', e.grants);
    if (e.sudo !== undefined) {
      if (protocol !== 'ssh') throw new ValidationError('ephemeral.sudo', 'applies to Linux machines (ssh) only');
      const cmds = e.sudo.split(',').map((c) => c.trim());
      if (!(e.sudo === 'ALL' || cmds.every((c) => SUDO_COMMAND.test(c)))) {
        throw new ValidationError('ephemeral.sudo', 'must be ALL or absolute command paths with plain arguments, separated by commas');
      }
    }
    if (e.ou !== undefined && (protocol !== 'ldap' || !DN.test(e.ou))) throw new ValidationError('ephemeral.ou', protocol === 'ldap' ? `'${e.ou}' is not a valid DN` : 'applies to directories (ldap) only');
    if (protocol === 'ldap' && e.ou === undefined) throw new ValidationError('ephemeral.ou', 'name the OU temporary entries are made under');
    if (e.inheritor !== undefined && (protocol !== 'postgres' || !SQL_ROLE.test(e.inheritor))) {
      throw new ValidationError('ephemeral.inheritor', protocol === 'postgres' ? `'${e.inheritor}' is not a valid role name` : 'applies to PostgreSQL only');
    }
    if (e.maxConnections !== undefined && protocol !== 'mysql') throw new ValidationError('ephemeral.maxConnections', 'applies to MySQL/MariaDB only');
  }
  if (jit.elevate) grants('elevate.grants', jit.elevate.grants);
  return jit;
}

/** One line for listings and `policy explain`. */
export function describeJit(jit: JitSettings | undefined): string {
  if (!jit || (!jit.ephemeral && !jit.elevate)) return 'the vaulted account (no ephemeral accounts)';
  const parts: string[] = [];
  if (jit.ephemeral) {
    const extra = [jit.ephemeral.sudo ? `sudo ${jit.ephemeral.sudo}` : '', jit.ephemeral.ou ? `under ${jit.ephemeral.ou}` : ''].filter(Boolean).join(', ');
    parts.push(`a temporary account per grant${jit.ephemeral.grants.length ? ` with ${jit.ephemeral.grants.join(', ')}` : ''}${extra ? ` (${extra})` : ''}, removed when the grant ends`);
  }
  if (jit.elevate) parts.push(`the vaulted account elevated with ${jit.elevate.grants.join(', ')} for the grant only`);
  return parts.join('; ');
}
