import type { Command } from 'commander';
import { loadConfig } from '../core/config.js';
import { isLoopback } from '../core/net.js';
import { startGateway } from '../gateway.js';
import { protocolAdapters } from '../adapters.js';
import { serveWeb } from '../web/serve.js';

/** `gatehouse serve`: runs the gateway in the foreground until SIGINT/SIGTERM. */
export function registerServe(program: Command): void {
  program
    .command('serve')
    .description('run the gateway (API, WebSocket, web vault and protocol listeners)')
    .option('--config <file>', 'config file (YAML)')
    .option('--data <dir>', 'data directory (SQLite, master key; certs inside it)')
    .option('--policies <dir>', 'policy directory to load at start')
    .option('--listen <name=host:port>', 'listener address (repeatable; port 0 picks a free one)', (v: string, acc: string[]) => [...acc, v], [] as string[])
    .option('--admin-password-file <file>', 'first run: take the admin password from this file')
    .option('--store <url>', 'keep state in PostgreSQL (postgres://...) to share it between gateways; default: SQLite in the data dir')
    .option('--allow-plaintext-on-loopback', 'let clients on loopback listeners connect without TLS (local tools, tests); listeners off loopback stay TLS-only')
    .action(async (o: { config?: string; data?: string; policies?: string; listen: string[]; adminPasswordFile?: string; store?: string; allowPlaintextOnLoopback?: boolean }) => {
      const cfg = loadConfig({
        ...(o.config ? { configFile: o.config } : {}), ...(o.data ? { data: o.data } : {}), ...(o.policies ? { policies: o.policies } : {}),
        listen: o.listen, ...(o.adminPasswordFile ? { adminPasswordFile: o.adminPasswordFile } : {}), ...(o.store ? { store: o.store } : {}),
        ...(o.allowPlaintextOnLoopback ? { allowPlaintextOnLoopback: true } : {}),
      });
      const gw = await startGateway(cfg, { adapters: await protocolAdapters(), web: serveWeb() });
      const out = process.stdout;
      out.write(`Gatehouse is running (data: ${cfg.dataDir}, certs: ${cfg.certDir}, store: ${gw.store.kind})\n`);
      for (const [name, a] of Object.entries(gw.addresses)) {
        const scheme = name === 'api' ? (a.host.startsWith('127.') || a.host === 'localhost' || a.host === '::1' ? 'http' : 'https') : name;
        out.write(`listening ${name} ${scheme}://${a.host.includes(':') ? `[${a.host}]` : a.host}:${a.port}\n`);
      }
      if (cfg.allowPlaintextOnLoopback) {
        const doors = Object.entries(gw.addresses).filter(([n]) => n !== 'api' && n !== 'ssh');
        const plain = doors.filter(([, a]) => isLoopback(a.host)).map(([n]) => n);
        const tls = doors.filter(([, a]) => !isLoopback(a.host)).map(([n]) => n);
        out.write(`plaintext clients allowed on loopback listeners: ${plain.join(', ') || 'none'}${tls.length ? ` (TLS only, not on loopback: ${tls.join(', ')})` : ''}\n`);
      }
      if (gw.policies) out.write(`policies: ${gw.policies.resources} resources and ${gw.policies.teams} teams from ${gw.policies.files.length} files\n`);
      if (gw.firstRunAdmin?.password) {
        out.write(`first run: admin user 'admin', one-time password: ${gw.firstRunAdmin.password}\n`);
        out.write(`sign in with: gatehouse login --user admin --server http://${gw.addresses.api?.host}:${gw.addresses.api?.port}\n`);
      } else if (gw.firstRunAdmin) {
        out.write(`first run: admin user 'admin' created with the password from ${cfg.adminPasswordFile}\n`);
      }
      out.write(`gateway CA: ${gw.pki.caPath}\n`);
      await new Promise<void>((resolve) => {
        const stop = (): void => {
          process.off('SIGINT', stop);
          process.off('SIGTERM', stop);
          resolve();
        };
        process.on('SIGINT', stop);
        process.on('SIGTERM', stop);
      });
      await gw.close();
    });
}
