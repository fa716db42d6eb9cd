/**
 * docker-compose.yml, the Dockerfile and deploy/: checked without Docker, because this
 * machine cannot pull an image. The compose file parses and every service, volume, network,
 * secret, port and healthcheck it refers to exists; the gateway's config files load as the
 * gateway loads them; the demo policies are the example policies pointed at the compose
 * targets; the Dockerfile builds with the commands the README documents. Where a compose CLI
 * is installed, `docker compose config` (or docker-compose v1) validates the file as well.
 * What has and has not been run for real is in README.md, "Deploying".
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import ssh2 from 'ssh2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { DOORS } from '../../protocols/registry.js';
import { isLoopback } from '../../src/core/net.js';
import { ListenerNames, loadConfig } from '../../src/core/config.js';

const ROOT = resolve(import.meta.dirname, '../..');
const read = (path: string): string => readFileSync(join(ROOT, path), 'utf8');
const yaml = (path: string): any => parseYaml(read(path), { merge: true });

const compose = yaml('docker-compose.yml');
const services: Record<string, any> = compose.services;
const NODES = ['gatehouse-a', 'gatehouse-b'];

/** `SOURCE:TARGET[:MODE]` of a short-syntax volume. */
function mounts(service: any): Array<{ source: string; target: string; named: boolean }> {
  return (service.volumes ?? []).map((v: string) => {
    const [source, target] = v.split(':') as [string, string];
    return { source, target, named: !source.startsWith('.') && !source.startsWith('/') };
  });
}
const networksOf = (service: any): string[] => (Array.isArray(service.networks) ? service.networks : Object.keys(service.networks ?? {}));
const secretsOf = (service: any): Array<{ source: string; target: string }> =>
  (service.secrets ?? []).map((s: string | { source: string; target?: string }) =>
    typeof s === 'string' ? { source: s, target: s } : { source: s.source, target: s.target ?? s.source });
const dependsOn = (service: any): Record<string, { condition: string }> =>
  Array.isArray(service.depends_on) ? Object.fromEntries(service.depends_on.map((d: string) => [d, { condition: 'service_started' }])) : service.depends_on ?? {};

/** Dockerfile instructions (continuations joined, comments dropped), grouped by stage; ARGs before the first FROM are left out. */
function dockerfile(path: string): Array<Array<{ op: string; args: string }>> {
  const lines = readFileSync(join(ROOT, path), 'utf8').split('\n').filter((l) => !/^\s*#/.test(l));
  const text = lines.join('\n').replace(/\\\n/g, ' ');
  const stages: Array<Array<{ op: string; args: string }>> = [[]];
  for (const line of text.split('\n')) {
    const m = /^\s*([A-Z]+)\s+(.*)$/.exec(line);
    if (!m) continue;
    if (m[1] === 'FROM') stages.push([]);
    stages.at(-1)!.push({ op: m[1]!, args: m[2]!.trim().replace(/\s+/g, ' ') });
  }
  return stages.filter((s) => s[0]?.op === 'FROM');
}
const stages = dockerfile('Dockerfile');
const runtime = stages.at(-1)!;
const instr = (stage: typeof runtime, op: string): string[] => stage.filter((i) => i.op === op).map((i) => i.args);

describe('docker-compose.yml', () => {
  it('defines the two gateway nodes, their PostgreSQL store and the four example targets', () => {
    expect(Object.keys(services).sort()).toEqual(['demo-init', 'gatehouse-a', 'gatehouse-b', 'mariadb', 'openldap', 'pg-target', 'sshd', 'store']);
    for (const name of NODES) expect(services[name].image).toBe('gatehouse:local');
    expect(services.store.image).toMatch(/^postgres:/);
  });

  it('builds every local image from a directory that has a Dockerfile, and names every other one', () => {
    for (const [name, s] of Object.entries(services)) {
      if (s.build === undefined) {
        expect(s.image, `${name} has neither build nor image`).toMatch(/^[\w./-]+:[\w.-]+$/);
        continue;
      }
      const context = typeof s.build === 'string' ? s.build : s.build.context;
      expect(existsSync(join(ROOT, context, 'Dockerfile')), `${name}: ${context}/Dockerfile`).toBe(true);
    }
  });

  it('declares every named volume, network and secret a service uses, and uses every one it declares', () => {
    const used = { volumes: new Set<string>(), networks: new Set<string>(), secrets: new Set<string>() };
    for (const [name, s] of Object.entries(services)) {
      for (const m of mounts(s)) {
        if (m.named) used.volumes.add(m.source);
        else expect(existsSync(join(ROOT, m.source)), `${name} mounts ${m.source}`).toBe(true);
      }
      for (const n of networksOf(s)) used.networks.add(n);
      for (const sec of secretsOf(s)) used.secrets.add(sec.source);
    }
    expect([...used.volumes].sort()).toEqual(Object.keys(compose.volumes).sort());
    expect([...used.networks].sort()).toEqual(Object.keys(compose.networks).sort());
    expect([...used.secrets].sort()).toEqual(Object.keys(compose.secrets).sort());
  });

  it('takes its secrets from files that exist, not from environment variables', () => {
    for (const [name, def] of Object.entries<any>(compose.secrets)) {
      expect(existsSync(join(ROOT, def.file)), `secret ${name}: ${def.file}`).toBe(true);
    }
    for (const [name, s] of Object.entries(services)) {
      for (const [key, value] of Object.entries<string>(s.environment ?? {})) {
        expect(key, `${name}: a secret in ${key}`).not.toMatch(/(?<!RANDOM_ROOT_)(PASSWORD|KEY|SECRET|TOKEN)$/);
        if (key.endsWith('_FILE')) expect(value).toMatch(/^\/(run\/secrets|demo)\//);
      }
    }
  });

  it('waits only on services that can report what it waits for', () => {
    // A service built here has its Dockerfile's HEALTHCHECK unless compose disables it.
    const built = (s: any): boolean => {
      if (s.build === undefined) return false;
      const context = typeof s.build === 'string' ? s.build : s.build.context;
      return dockerfile(join(context, 'Dockerfile')).at(-1)!.some((i) => i.op === 'HEALTHCHECK');
    };
    for (const [name, s] of Object.entries(services)) {
      for (const [dep, { condition }] of Object.entries(dependsOn(s))) {
        expect(services[dep], `${name} depends on ${dep}`).toBeDefined();
        const target = services[dep];
        if (condition === 'service_healthy') {
          const has = !target.healthcheck?.disable && (target.healthcheck?.test !== undefined || built(target));
          expect(has, `${name} waits for ${dep} to be healthy, which has no healthcheck`).toBe(true);
        }
        if (condition === 'service_completed_successfully') expect(target.restart, `${dep} is a one-shot`).toBe('no');
      }
    }
  });

  it('publishes each node on its own host ports, and only the gateways', () => {
    const published = Object.entries(services).flatMap(([name, s]) => (s.ports ?? []).map((p: string) => ({ name, host: p.split(':')[0], container: Number(p.split(':')[1]) })));
    expect(new Set(published.map((p) => p.name))).toEqual(new Set(NODES));
    expect(new Set(published.map((p) => p.host)).size).toBe(published.length);
    const cluster = loadConfig({ configFile: join(ROOT, 'deploy/cluster.yaml') });
    const listening = Object.values(cluster.listen).map((a) => a.port).sort();
    const exposed = instr(runtime, 'EXPOSE').flatMap((e) => e.split(' ')).map(Number).sort();
    for (const node of NODES) {
      expect(published.filter((p) => p.name === node).map((p) => p.container).sort()).toEqual(listening);
    }
    expect(exposed).toEqual(listening);
  });

  it('publishes every door of node A on its default port, the one launch commands and login examples name', () => {
    for (const door of DOORS) expect(services['gatehouse-a'].ports, door.name).toContain(`${door.defaultPort}:${door.defaultPort}`);
  });

  it('runs both nodes on deploy/cluster.yaml, mounted as a secret at the path serve --config reads', () => {
    for (const node of NODES) {
      const s = services[node];
      const config = s.command[s.command.indexOf('--config') + 1];
      const secret = secretsOf(s).find((sec) => `/run/secrets/${sec.target}` === config);
      expect(secret, `${node}: --config ${config} is no secret's path`).toBeDefined();
      expect(compose.secrets[secret!.source].file).toBe('./deploy/cluster.yaml');
      expect(s.hostname).toBe(node);
    }
  });
});

describe('the gateway config files', () => {
  const single = loadConfig({ configFile: join(ROOT, 'deploy/gatehouse.yaml') });
  const cluster = loadConfig({ configFile: join(ROOT, 'deploy/cluster.yaml') });

  it('load as the gateway loads them, with every listener off loopback (so TLS-only) and the API on 8080', () => {
    for (const cfg of [single, cluster]) {
      expect(Object.keys(cfg.listen).sort()).toEqual([...ListenerNames].sort());
      for (const a of Object.values(cfg.listen)) expect(isLoopback(a.host)).toBe(false);
      expect(cfg.listen.api?.port).toBe(8080);
      expect(cfg.allowPlaintextOnLoopback).toBe(false);
    }
    expect(single.storeUrl).toBeUndefined();
  });

  it('list every door themselves, on all interfaces at its default port (a door left out would listen on loopback only)', () => {
    for (const file of ['deploy/gatehouse.yaml', 'deploy/cluster.yaml']) {
      const listen = yaml(file).listen;
      for (const door of DOORS) expect(listen[door.name], `${file}: listen.${door.name}`).toBe(`0.0.0.0:${door.defaultPort}`);
    }
  });

  it('keep data, certs and the audit key in the image volume, which the Dockerfile creates for its user', () => {
    const volume = JSON.parse(instr(runtime, 'VOLUME')[0]!)[0] as string;
    for (const cfg of [single, cluster]) {
      for (const path of [cfg.dataDir, cfg.certDir, cfg.auditKeyFile]) expect(path.startsWith(`${volume}/`), path).toBe(true);
    }
    for (const node of NODES) expect(mounts(services[node]).find((m) => m.target === volume)?.source).toBe('gatehouse-data');
    expect(instr(runtime, 'RUN').join(' ')).toContain(`chown -R gatehouse:gatehouse ${volume}`);
  });

  it('name both nodes in the certificate, and reach the store service with the password the store is given', () => {
    expect(cluster.hostnames).toEqual(NODES);
    const url = new URL(cluster.storeUrl!);
    expect(url.hostname).toBe('store');
    expect(services.store.environment.POSTGRES_USER).toBe(url.username);
    expect(services.store.environment.POSTGRES_DB).toBe(url.pathname.slice(1));
    expect(decodeURIComponent(url.password)).toBe(read('deploy/secrets/store-password').trim());
    for (const node of NODES) expect(networksOf(services[node])).toEqual(expect.arrayContaining(networksOf(services.store)));
  });

  it('load the policies from the directory the nodes mount them into', () => {
    for (const node of NODES) {
      const targets = mounts(services[node]).filter((m) => m.target.startsWith(`${cluster.policiesDir}/`)).map((m) => m.source).sort();
      expect(targets).toEqual(['./deploy/policies/demo.yaml', './policies/teams.yaml']);
    }
  });
});

describe('the demo policies', () => {
  const example = yaml('policies/example.yaml').resources as any[];
  const demo = yaml('deploy/policies/demo.yaml').resources as any[];
  let secrets: string;

  beforeAll(() => {
    secrets = mkdtempSync(join(tmpdir(), 'gh-demo-secrets-'));
    execFileSync(process.execPath, [join(ROOT, 'deploy/demo/init.mjs'), secrets]);
  });
  afterAll(() => rmSync(secrets, { recursive: true, force: true }));

  it('are the example resources with the compose targets filled in: the same owners, access and workflows', () => {
    expect(demo.map((r) => r.name)).toEqual(example.map((r) => r.name).filter((n) => n !== 'grafana'));
    for (const r of demo) {
      const { host: _h, port: _p, credentials, ...rest } = r;
      const { host: _eh, port: _ep, credentials: exampleCredentials, ...exampleRest } = example.find((e) => e.name === r.name);
      expect(rest, r.name).toEqual(exampleRest);
      expect(credentials.login).toBe(exampleCredentials.login);
    }
  });

  it('point every resource at a target service the gateways share a network with, on a port that service exposes', () => {
    for (const r of demo) {
      const target = services[r.host];
      expect(target, `${r.name}: no service ${r.host}`).toBeDefined();
      expect(target.expose, `${r.name}: ${r.host} does not expose ${r.port}`).toContain(String(r.port));
      for (const node of NODES) expect(networksOf(services[node])).toEqual(expect.arrayContaining(networksOf(target)));
    }
  });

  it('read every credential from a file demo-init writes into the volume the nodes mount', () => {
    const demoMount = mounts(services['gatehouse-a']).find((m) => m.source === 'demo-secrets')!;
    expect(mounts(services['demo-init']).find((m) => m.source === 'demo-secrets')?.target).toBe(demoMount.target);
    for (const r of demo) {
      for (const path of [r.credentials.passwordFile, r.credentials.keyFile].filter(Boolean) as string[]) {
        expect(path.startsWith(`${demoMount.target}/gatehouse/`), path).toBe(true);
        expect(existsSync(join(secrets, path.slice(demoMount.target.length))), `${r.name}: demo-init makes no ${path}`).toBe(true);
      }
    }
  });

  it('get from demo-init the same password the target is given, a certificate for the target name, and a matching SSH key pair', () => {
    const file = (p: string): string => readFileSync(join(secrets, p), 'utf8');
    expect(file('gatehouse/prod-pg-password').trim()).toBe(file('pg-target/password'));
    expect(file('gatehouse/billing-mysql-password').trim()).toBe(file('mariadb/password'));
    expect(file('gatehouse/corp-ldap-password').trim()).toBe(file('openldap/gatehouse-password'));
    expect(services['pg-target'].environment.POSTGRES_PASSWORD_FILE).toBe('/demo/pg-target/password');
    expect(services.mariadb.environment.MARIADB_PASSWORD_FILE).toBe('/demo/mariadb/password');
    expect(read('deploy/targets/openldap/entrypoint.sh')).toContain('/demo/openldap/gatehouse-password');
    const ca = new X509Certificate(file('ca.pem'));
    for (const host of ['pg-target', 'mariadb', 'openldap']) {
      const cert = new X509Certificate(file(`${host}/server.pem`));
      expect(cert.verify(ca.publicKey)).toBe(true);
      expect(cert.checkHost(host)).toBe(host);
      expect(cert.checkPrivateKey(createPrivateKey(file(`${host}/server.key`)))).toBe(true);
      if (host === 'openldap') continue;
      expect(JSON.stringify([...services[host].command, ...Object.values(services[host].environment)])).toContain(`/demo/${host}/server.key`);
    }
    // slapd gets its key pair from the entrypoint, which copies it where the openldap user reads it.
    const entrypoint = read('deploy/targets/openldap/entrypoint.sh');
    for (const path of ['/demo/openldap/server.pem', '/demo/openldap/server.key', '/demo/ca.pem']) expect(entrypoint).toContain(path);
    for (const attr of ['olcTLSCertificateFile', 'olcTLSCertificateKeyFile', 'olcTLSCACertificateFile']) expect(entrypoint).toContain(`${attr}: `);
    const key = ssh2.utils.parseKey(file('gatehouse/prod-web.key'));
    if (key instanceof Error || Array.isArray(key)) throw new Error('prod-web.key does not parse');
    expect(file('sshd/authorized_keys')).toContain(key.getPublicSSH().toString('base64'));
    expect(services.sshd.environment.PUBLIC_KEY_FILE).toBe('/demo/sshd/authorized_keys');
  });

  it('are written once: a second demo-init run changes nothing', () => {
    const before = readFileSync(join(secrets, 'gatehouse/prod-pg-password'), 'utf8');
    const out = execFileSync(process.execPath, [join(ROOT, 'deploy/demo/init.mjs'), secrets], { encoding: 'utf8' });
    expect(out).toContain('nothing to do');
    expect(readFileSync(join(secrets, 'gatehouse/prod-pg-password'), 'utf8')).toBe(before);
  });

  it('are read by an OpenLDAP entrypoint that is valid sh', () => {
    const r = spawnSync('sh', ['-n', join(ROOT, 'deploy/targets/openldap/entrypoint.sh')], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
  });

  it('give the gateway its secrets under the uid the Dockerfile runs it as', () => {
    const uid = /--uid (\d+)/.exec(instr(runtime, 'RUN').join(' '))?.[1];
    expect(read('deploy/demo/init.mjs')).toContain(`gatehouse: ${uid},`);
    if (process.getuid?.() === 0) expect(statSync(join(secrets, 'gatehouse/prod-pg-password')).uid).toBe(Number(uid));
  });
});

describe('the Dockerfile', () => {
  it('builds in one stage and runs from a slim Node base as an unprivileged user', () => {
    expect(stages.length).toBeGreaterThanOrEqual(2);
    expect(instr(runtime, 'FROM')[0]).toMatch(/^node:\$\{NODE_VERSION\}-[a-z]+-slim$/);
    const user = instr(runtime, 'USER')[0] ?? 'root';
    expect(user.split(':')[0]).not.toMatch(/^(root|0)$/);
    expect(runtime.findIndex((i) => i.op === 'USER')).toBeGreaterThan(runtime.findIndex((i) => i.op === 'RUN'));
  });

  it('checks health with deploy/healthcheck.mjs, which asks /healthz', () => {
    const check = instr(runtime, 'HEALTHCHECK')[0]!;
    const installed = /"node", "([^"]+)"/.exec(check)?.[1];
    expect(instr(runtime, 'COPY')).toContain(`deploy/healthcheck.mjs ${installed}`);
    const script = read('deploy/healthcheck.mjs');
    expect(script).toContain("'https://127.0.0.1:8080/healthz'");
    // The CA it trusts by default is where both config files keep the gateway's certificates.
    for (const file of ['deploy/gatehouse.yaml', 'deploy/cluster.yaml']) {
      expect(script).toContain(`'${loadConfig({ configFile: join(ROOT, file) }).certDir}/ca.pem'`);
    }
  });

  it('builds with the commands README.md documents for a production install', () => {
    const readme = read('README.md');
    expect(readme).toContain('\n## Deploying\n');
    const deploying = readme.slice(readme.indexOf('\n## Deploying\n'));
    const npmSteps = stages.slice(0, -1).flatMap((s) => instr(s, 'RUN')).filter((r) => r.startsWith('npm '));
    expect(npmSteps.map((r) => r.split(' ').slice(0, 2).join(' '))).toEqual(['npm ci', 'npm pack', 'npm install']);
    for (const step of npmSteps) {
      // The command and the flags that change what is installed; --no-audit and the paths are the Dockerfile's own.
      const essential = step.split(' ').filter((w, i) => i < 2 || ['--omit=dev'].includes(w)).join(' ');
      expect(deploying, `README does not document '${essential}'`).toContain(essential);
    }
    expect(instr(stages[0]!, 'COPY')).toContain('deploy/install/package.json ./');
    expect(deploying).toContain('deploy/install/package.json');
  });

  it('keeps secrets and local build output out of the build context, and not what the build needs', () => {
    const ignored = read('.dockerignore').split('\n').filter((l) => l && !l.startsWith('#'));
    expect(ignored).toEqual(expect.arrayContaining(['deploy/secrets', 'node_modules', 'dist', 'data', 'certs', '.git']));
    for (const needed of ['src', 'protocols', 'scripts', 'bin', 'deploy', 'package.json', 'tsconfig.json', 'tsconfig.build.json']) {
      expect(ignored, needed).not.toContain(needed);
    }
  });
});

/** A compose CLI that validates without a daemon or images: v2 plugin, else v1. */
function composeCli(): string[] | undefined {
  for (const cmd of [['docker', 'compose'], ['docker-compose']]) {
    if (spawnSync(cmd[0]!, [...cmd.slice(1), 'version'], { stdio: 'ignore' }).status === 0) return cmd;
  }
  return undefined;
}
// test/targets/install.sh installs Debian's docker-compose before the suite runs.
describe('the compose CLI', () => {
  it('accepts the compose file (docker compose config, without a daemon or images)', () => {
    const cli = composeCli();
    expect(cli, 'no compose CLI: run test/targets/install.sh').toBeDefined();
    const r = spawnSync(cli![0]!, [...cli!.slice(1), '-f', join(ROOT, 'docker-compose.yml'), 'config', '--quiet'], { encoding: 'utf8', cwd: ROOT });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
  });
});
