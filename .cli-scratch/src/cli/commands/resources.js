import { readFile } from 'node:fs/promises';
import { Option } from 'commander';
import { Protocols, ProtocolsByType, RecordTypes } from '../../core/model.js';
import { CliError, usageError } from '../cli-error.js';
import { intArg, seg } from '../context.js';
import { describeResourceState, formatTable } from '../format.js';
import { readStdinSecret } from '../io.js';
export function registerResources(program, ctx) {
    const resource = program.command('resource').description('manage resources (admin, owner)');
    resource
        .command('add')
        .description('add a resource; its credentials are vaulted and never shown again')
        .argument('<name>', 'resource name, as users will address it')
        .addOption(new Option('--type <type>', 'record type').choices(RecordTypes).makeOptionMandatory())
        .addOption(new Option('--protocol <protocol>', 'protocol').choices(Protocols).makeOptionMandatory())
        .requiredOption('--host <host>', 'target host')
        .requiredOption('--port <port>', 'target port', intArg(1, 65535))
        .option('--database <db>', 'database name (database resources)')
        .option('--owner <user>', 'owner (default: you)')
        .option('--login <user>', 'the account the gateway signs in to the target as')
        .addOption(new Option('--password-stdin', "read the target account's password from stdin").conflicts('key'))
        .option('--key <file>', "private key file for the target account (SSH)")
        .action(async (name, flags, cmd) => {
        const allowed = ProtocolsByType[flags.type];
        if (!allowed.includes(flags.protocol)) {
            throw usageError(`--protocol: a ${flags.type} resource speaks ${allowed.join(' or ')}, not ${flags.protocol}`);
        }
        if ((flags.passwordStdin || flags.key) && !flags.login)
            throw usageError('--login is needed with --password-stdin or --key');
        const body = { name, type: flags.type, protocol: flags.protocol, host: flags.host, port: flags.port };
        if (flags.database !== undefined)
            body.database = flags.database;
        if (flags.owner !== undefined)
            body.owner = flags.owner;
        if (flags.login !== undefined)
            body.login = flags.login;
        if (flags.passwordStdin)
            body.password = await readStdinSecret(ctx.io, 'password');
        if (flags.key !== undefined)
            body.privateKey = await readKeyFile(flags.key);
        const created = await (await ctx.client(cmd)).post('/resources', body);
        ctx.print(`Added ${created.type} resource ${created.name} (${created.protocol} ${created.host}:${created.port}), owner ${created.owner}.`);
    });
    resource
        .command('share')
        .description('put a user or a team on the access list')
        .argument('<name>', 'resource name')
        .addOption(new Option('--user <user>', 'user to add').conflicts('team'))
        .option('--team <team>', 'team to add')
        .action(async (name, flags, cmd) => {
        if (flags.user === undefined && flags.team === undefined)
            throw usageError('give --user NAME or --team NAME');
        const body = flags.user !== undefined ? { user: flags.user } : { team: flags.team };
        const updated = await (await ctx.client(cmd)).post(`/resources/${seg(name)}/share`, body);
        const who = flags.user !== undefined ? flags.user : `team ${flags.team}`;
        ctx.print(`Shared ${updated.name} with ${who}.`);
    });
    resource
        .command('remove')
        .description('remove a resource; its live sessions end at once')
        .argument('<name>', 'resource name')
        .action(async (name, _flags, cmd) => {
        await (await ctx.client(cmd)).delete(`/resources/${seg(name)}`);
        ctx.print(`Removed ${name}.`);
    });
    program
        .command('resources')
        .description('the resources you can reach, each with its workflow state for you')
        .option('--json', 'print raw JSON')
        .action(async (flags, cmd) => {
        const views = await (await ctx.client(cmd)).get('/resources');
        if (flags.json)
            return ctx.printJson(views);
        if (views.length === 0)
            return ctx.print('No resources you can reach.');
        const now = ctx.now();
        const rows = views.map((v) => [v.name, v.type, v.protocol, describeResourceState(v, now, ctx.zone)]);
        ctx.print(formatTable(['NAME', 'TYPE', 'PROTOCOL', 'STATE'], rows));
    });
}
async function readKeyFile(path) {
    try {
        const key = await readFile(path, 'utf8');
        if (!/-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----/.test(key))
            throw new Error('not a PEM or OpenSSH private key');
        return key;
    }
    catch (e) {
        throw new CliError('USAGE', `--key: cannot use ${path}: ${e.message}`, { exitCode: 2 });
    }
}
//# sourceMappingURL=resources.js.map