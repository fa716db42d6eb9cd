import { loadConfig } from '../../core/config.js';
import { resolveLogFormat, setDefaultLogFormat, type LogFormat } from '../../core/log.js';
import { isLoopback } from '../../core/net.js';
import { startGateway } from '../../gateway.js';
import { protocolAdapters } from '../../adapters.js';
import { serveWeb } from '../../web/serve.js';

export interface ServeFlags {
  config?: string;
  data?: string;
  policies?: string;
  listen: string[];
  adminPasswordFile?: string;
  store?: string;
  allowPlaintextOnLoopback?: boolean;
  workers?: string;
  logFormat?: LogFormat;
}

/**
 * Starts the gateway and prints, as plain text on stdout, what a person needs: where it
 * listens, the first-run admin password and the CA. Logs go to stderr (core/log.ts).
 */
export async function serve(o: ServeFlags): Promise<void> {
  // Decided once, before anything is logged (a bad GATEHOUSE_LOG_FORMAT stops serve here),
  // for every logger the gateway makes, the PostgreSQL store's own included.
  setDefaultLogFormat(resolveLogFormat(o.logFormat, process.env, process.stderr.isTTY === true));
  const cfg = loadConfig({
    ...(o.config ? { configFile: o.config } : {}), ...(o.data ? { data: o.data } : {}), ...(o.policies ? { policies: o.policies } : {}),
    listen: o.listen, ...(o.adminPasswordFile ? { adminPasswordFile: o.adminPasswordFile } : {}), ...(o.store ? { store: o.store } : {}),
    ...(o.allowPlaintextOnLoopback ? { allowPlaintextOnLoopback: true } : {}), ...(o.workers ? { workers: o.workers } : {}),
  });
  const gw = await startGateway(cfg, { adapters: await protocolAdapters(), web: serveWeb() });
  // Before the lines below: whoever reads them may stop the gateway at once, and a signal
  // that came before its handler would end the process without closing the gateway.
  const stopped = untilStopSignal();
  const out = process.stdout;
  out.write(`Gatehouse is running (data: ${cfg.dataDir}, certs: ${cfg.certDir}, store: ${gw.store.kind})\n`);
  const urls = Object.fromEntries(Object.entries(gw.addresses).map(([name, a]) => {
    const scheme = name === 'api' ? (a.host.startsWith('127.') || a.host === 'localhost' || a.host === '::1' ? 'http' : 'https') : name;
    return [name, `${scheme}://${a.host.includes(':') ? `[${a.host}]` : a.host}:${a.port}`];
  }));
  for (const [name, url] of Object.entries(urls)) out.write(`listening ${name} ${url}\n`);
  if (cfg.allowPlaintextOnLoopback) {
    // SSH is always encrypted, LDAPS is TLS from the first byte and web apps are always HTTPS: none has a plaintext mode.
    const doors = Object.entries(gw.addresses).filter(([n]) => n !== 'api' && n !== 'ssh' && n !== 'ldaps' && n !== 'http');
    const plain = doors.filter(([, a]) => isLoopback(a.host)).map(([n]) => n);
    const tls = doors.filter(([, a]) => !isLoopback(a.host)).map(([n]) => n);
    out.write(`plaintext clients allowed on loopback listeners: ${plain.join(', ') || 'none'}${tls.length ? ` (TLS only, not on loopback: ${tls.join(', ')})` : ''}\n`);
  }
  if (gw.policies) out.write(`policies: ${gw.policies.resources} resources and ${gw.policies.teams} teams from ${gw.policies.files.length} files\n`);
  if (gw.firstRunAdmin?.password) {
    out.write(`first run: admin user 'admin', one-time password: ${gw.firstRunAdmin.password}\n`);
    // An https:// API has the gateway's own certificate: the command carries the CA to trust.
    const ca = urls.api?.startsWith('https:') ? ` --ca ${gw.pki.caPath}` : '';
    out.write(`sign in with: gatehouse login --user admin --server ${urls.api}${ca}\n`);
  } else if (gw.firstRunAdmin) {
    out.write(`first run: admin user 'admin' created with the password from ${cfg.adminPasswordFile}\n`);
  }
  out.write(`gateway CA: ${gw.pki.caPath}\n`);
  await stopped;
  await gw.close();
}

function untilStopSignal(): Promise<void> {
  return new Promise<void>((resolve) => {
    const stop = (): void => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      resolve();
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
}
