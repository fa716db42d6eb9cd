import { existsSync, readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { GatehouseError } from './errors.js';
export const ListenerNames = ['api', 'ssh', 'postgres', 'mysql', 'ldap', 'http'];
export const DEFAULT_LISTEN = {
    api: { host: '127.0.0.1', port: 8080 },
    ssh: { host: '127.0.0.1', port: 2222 },
    postgres: { host: '127.0.0.1', port: 15432 },
    mysql: { host: '127.0.0.1', port: 13306 },
    ldap: { host: '127.0.0.1', port: 13389 },
    http: { host: '127.0.0.1', port: 8443 },
};
const Address = z.union([z.literal('off'), z.string().regex(/^(\[[0-9a-fA-F:]+\]|[^:]+):\d{1,5}$/, 'use HOST:PORT')]);
const FileSchema = z.strictObject({
    data: z.string().optional(),
    certs: z.string().optional(),
    policies: z.string().optional(),
    listen: z.partialRecord(z.enum(ListenerNames), Address).optional(),
    hostnames: z.array(z.string()).optional(),
    webhooks: z.array(z.strictObject({ url: z.url(), secret: z.string().min(16), events: z.array(z.string()).optional() })).optional(),
    warnBeforeMinutes: z.number().int().min(0).max(1440).optional(),
    nodeName: z.string().optional(),
    allowPlaintextOnLoopback: z.boolean().optional(),
});
export function parseAddress(text, field) {
    const m = /^(\[[0-9a-fA-F:]+\]|[^:]+):(\d{1,5})$/.exec(text);
    const port = m ? Number(m[2]) : NaN;
    if (!m || port > 65535)
        throw new GatehouseError('CONFIG_INVALID', `${field}: '${text}' is not HOST:PORT (port 0 picks a free one)`);
    return { host: m[1].replace(/^\[|\]$/g, ''), port };
}
/** Builds the gateway configuration: defaults, then the config file, then flags. Validated once here. */
export function loadConfig(inputs) {
    const cwd = inputs.cwd ?? process.cwd();
    let file = {};
    if (inputs.configFile) {
        const path = resolve(cwd, inputs.configFile);
        let raw;
        try {
            raw = parseYaml(readFileSync(path, 'utf8'));
        }
        catch (e) {
            throw new GatehouseError('CONFIG_INVALID', `${path}: ${e.message}`);
        }
        const r = FileSchema.safeParse(raw ?? {});
        if (!r.success) {
            const issue = r.error.issues[0];
            throw new GatehouseError('CONFIG_INVALID', `${path}: ${issue.path.join('.') || '(top)'}: ${issue.message}`);
        }
        file = r.data;
    }
    const dataDir = resolve(cwd, inputs.data ?? file.data ?? 'data');
    // Several gateways side by side each keep their certs in their own data dir.
    const certDir = resolve(cwd, file.certs ?? (inputs.data ? resolve(dataDir, 'certs') : 'certs'));
    const listen = { ...DEFAULT_LISTEN };
    for (const [name, value] of Object.entries(file.listen ?? {})) {
        if (value === 'off')
            delete listen[name];
        else if (value)
            listen[name] = parseAddress(value, `listen.${name}`);
    }
    for (const flag of inputs.listen ?? []) {
        const eq = flag.indexOf('=');
        const name = flag.slice(0, eq);
        if (eq < 0 || !ListenerNames.includes(name)) {
            throw new GatehouseError('CONFIG_INVALID', `--listen ${flag}: use NAME=HOST:PORT with NAME one of ${ListenerNames.join(', ')}`);
        }
        const value = flag.slice(eq + 1);
        if (value === 'off')
            delete listen[name];
        else
            listen[name] = parseAddress(value, `--listen ${name}`);
    }
    const policiesDir = inputs.policies ?? file.policies ?? (existsSync(resolve(cwd, 'policies')) ? 'policies' : undefined);
    const cfg = {
        dataDir,
        certDir,
        listen,
        hostnames: file.hostnames ?? [],
        webhooks: file.webhooks ?? [],
        warnBeforeMinutes: file.warnBeforeMinutes ?? 5,
        nodeName: file.nodeName ?? hostname(),
        allowPlaintextOnLoopback: file.allowPlaintextOnLoopback ?? false,
    };
    if (policiesDir)
        cfg.policiesDir = resolve(cwd, policiesDir);
    if (inputs.adminPasswordFile)
        cfg.adminPasswordFile = resolve(cwd, inputs.adminPasswordFile);
    return cfg;
}
//# sourceMappingURL=config.js.map