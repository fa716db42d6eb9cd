import { describe, expect, it } from 'vitest';
import { clientCommand, clientInvocation } from '../../../src/api/launch.js';
import { Protocols, type Resource } from '../../../src/core/model.js';
import { DOORS, type ClientInvocation } from '../../../protocols/registry.js';

const TICKET = `ght_${'A'.repeat(43)}`;

function resource(protocol: Resource['protocol']): Resource {
  return {
    id: 'r1', name: 'prod-x', type: protocol === 'ssh' ? ('machine' as const) : ('database' as const), protocol, host: '10.0.0.5', port: 5432, owner: 'bob',
    access: [], settings: {}, options: {}, source: 'api', createdAt: new Date(0),
  };
}

describe('launch commands come from the door registry', () => {
  // A browser has nowhere to carry a ticket but the enter link: that door is tested below.
  it.each(DOORS.filter((d) => d.protocol !== 'http').map((d) => [d.name, d] as const))('%s: the ticket never appears in the arguments, only in the environment or on standard input', (_name, door) => {
    const caPath = '/data/certs/ca.pem';
    const inv: ClientInvocation = door.client({ host: '127.0.0.1', port: 40000, caPath }, 'alice', resource(door.protocol), TICKET);
    expect(inv.args.join(' ')).not.toContain(TICKET);
    expect(inv.args.join(' ')).toContain('alice:prod-x');
    expect(inv.args.join(' ')).toContain('40000');
    // The environment carries the ticket or the gateway's CA file, nothing else.
    expect(Object.values(inv.env).every((v) => v === TICKET || v === caPath)).toBe(true);
    if (door.protocol !== 'ssh') expect([...Object.values(inv.env), inv.stdin]).toContain(TICKET);
  });

  it('a web app is entered through its own origin: the enter link, https, below the apps domain', () => {
    const d = { listeners: { http: { host: '127.0.0.1', port: 8443 } }, appsDomain: 'apps.gw.example.com' };
    expect(clientCommand(d, 'alice', resource('http'), TICKET)).toBe(`https://prod-x.apps.gw.example.com:8443/.gatehouse/enter?user=alice&ticket=${TICKET}`);
    expect(clientInvocation(d, 'alice', resource('http'), TICKET)).toMatchObject({ program: 'xdg-open', env: {} });
  });

  it('gatehouse launch uses the listener of the door that serves the protocol', () => {
    const inv = clientInvocation({ listeners: { ldap: { host: '127.0.0.1', port: 40001 } } }, 'alice', resource('ldap'), TICKET);
    expect(inv?.args).toContain('ldap://127.0.0.1:40001');
  });

  it('every protocol has a way in: a stock client, a browser link, or gatehouse tunnel', () => {
    for (const p of Protocols) expect(clientCommand({ listeners: {} }, 'alice', resource(p), TICKET), p).not.toBe('');
    expect(clientInvocation({ listeners: {} }, 'alice', resource('rdp'), TICKET)).toBeUndefined();
    expect(clientCommand({ listeners: {} }, 'alice', resource('tcp'), TICKET)).toBe('gatehouse tunnel prod-x --port 0');
  });

  it('ldapsearch gets the ticket from printf on standard input, never as an argument', () => {
    const r = { ...resource('ldap'), options: { baseDn: 'ou=people,dc=example,dc=com' } };
    const cmd = clientCommand({ listeners: { ldap: { host: '127.0.0.1', port: 13389 } }, caPath: '/ca.pem' }, 'alice', r, TICKET);
    expect(cmd).toBe(`printf %s ${TICKET} | LDAPTLS_CACERT=/ca.pem ldapsearch -x -ZZ -H ldap://127.0.0.1:13389 -D alice:prod-x -y /dev/stdin -b ou=people,dc=example,dc=com`);
  });

  it('psql verifies the gateway certificate by name when the CA is known', () => {
    const cmd = clientCommand({ listeners: { postgres: { host: '127.0.0.1', port: 15432 } }, caPath: '/ca.pem' }, 'alice', resource('postgres'), TICKET);
    expect(cmd).toBe(`PGPASSWORD=${TICKET} psql 'host=localhost port=15432 user=alice:prod-x dbname=prod-x sslmode=verify-full sslrootcert=/ca.pem'`);
  });
});
