import { describe, expect, it } from 'vitest';
import { clientCommand, clientInvocation } from '../../../src/api/launch.js';
import type { Resource } from '../../../src/core/model.js';
import { DOORS } from '../../../protocols/registry.js';

const TICKET = `ght_${'A'.repeat(43)}`;

function resource(protocol: Resource['protocol']): Resource {
  return {
    id: 'r1', name: 'prod-x', type: protocol === 'ssh' ? ('machine' as const) : ('database' as const), protocol, host: '10.0.0.5', port: 5432, owner: 'bob',
    access: [], settings: {}, options: {}, source: 'api', createdAt: new Date(0),
  };
}

describe('launch commands come from the door registry', () => {
  it.each(DOORS.map((d) => [d.name, d] as const))('%s: the ticket never appears in the arguments, only in the environment', (_name, door) => {
    const inv = clientInvocation({ listeners: { [door.name]: { host: '127.0.0.1', port: 40000 } }, caPath: '/data/certs/ca.pem' }, 'alice', resource(door.protocol), TICKET);
    expect(inv).toBeDefined();
    expect(inv!.args.join(' ')).not.toContain(TICKET);
    expect(inv!.args.join(' ')).toContain('alice:prod-x');
    expect(inv!.args.join(' ')).toContain('40000');
    expect(Object.values(inv!.env).every((v) => v === TICKET)).toBe(true);
  });

  it('a protocol no door serves gets no command at all', () => {
    expect(clientInvocation({ listeners: {} }, 'alice', resource('ldap'), TICKET)).toBeUndefined();
    expect(clientCommand({ listeners: {} }, 'alice', resource('ldap'), TICKET)).toBe('');
  });

  it('psql verifies the gateway certificate by name when the CA is known', () => {
    const cmd = clientCommand({ listeners: { postgres: { host: '127.0.0.1', port: 15432 } }, caPath: '/ca.pem' }, 'alice', resource('postgres'), TICKET);
    expect(cmd).toBe(`PGPASSWORD=${TICKET} psql 'host=localhost port=15432 user=alice:prod-x dbname=prod-x sslmode=verify-full sslrootcert=/ca.pem'`);
  });
});
