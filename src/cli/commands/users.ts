import type { Command } from 'commander';
import { Enforcements } from '../../core/model.js';
import { collect, type Ctx } from '../context.js';

/** The command line only: what runs is in ../actions/users.ts, loaded when a command runs. */
const run = () => import('../actions/users.js');

/** Users, teams and roles: the admin's side of who may do what. */
export function registerUsers(program: Command, ctx: Ctx): void {
  const user = program.command('user').description('manage users (admin)');
  user
    .command('add')
    .description('create a user')
    .argument('<name>', 'user name')
    .option('--team <team>', 'add to this team (repeatable)', collect)
    .option('--admin', 'make the user an administrator')
    .option('--password-stdin', 'read an initial password from stdin')
    .action(async (name: string, flags: { team?: string[]; admin?: boolean; passwordStdin?: boolean }, cmd: Command) => (await run()).addUser(ctx, name, flags, cmd));
  user
    .command('passwd')
    .description("set a password: your own (give the current one), or anyone's as an admin; the user's other sessions and tokens are signed out")
    .argument('<name>', 'user name')
    .option('--password-stdin', 'read from stdin: for your own account the current password on the first line and the new one on the second; else the new one')
    .action(async (name: string, flags: { passwordStdin?: boolean }, cmd: Command) => (await run()).passwd(ctx, name, flags, cmd));
  for (const [verb, done] of [['disable', 'Disabled'], ['enable', 'Enabled']] as const) {
    user
      .command(verb)
      .description(verb === 'disable' ? 'disable a user; their live sessions end at once' : 'enable a disabled user')
      .argument('<name>', 'user name')
      .action(async (name: string, _flags: unknown, cmd: Command) => (await run()).setDisabled(ctx, verb, done, name, cmd));
  }

  const team = program.command('team').description('manage teams (admin)');
  team
    .command('add')
    .description('create a team')
    .argument('<name>', 'team name')
    .action(async (name: string, _flags: unknown, cmd: Command) => (await run()).addTeam(ctx, name, cmd));
  team
    .command('member')
    .description('add a user to a team')
    .argument('<team>', 'team name')
    .argument('<user>', 'user name')
    .action(async (teamName: string, userName: string, _flags: unknown, cmd: Command) => (await run()).addMember(ctx, teamName, userName, cmd));

  const role = program.command('role').description('roles and their enforcement policies (admin)');
  role
    .command('create')
    .description('create a role')
    .argument('<name>', 'role name')
    .action(async (name: string, _flags: unknown, cmd: Command) => (await run()).createRole(ctx, name, cmd));
  role
    .command('set')
    .description('set an enforcement policy on a role')
    .argument('<name>', 'role name')
    .requiredOption('--enforcement <POLICY=true|false>', `one of ${Enforcements.join(', ')}`)
    .action(async (name: string, flags: { enforcement: string }, cmd: Command) => (await run()).setEnforcement(ctx, name, flags, cmd));
  role
    .command('assign')
    .description('give a user a role')
    .argument('<name>', 'role name')
    .argument('<user>', 'user name')
    .action(async (name: string, userName: string, _flags: unknown, cmd: Command) => (await run()).assignRole(ctx, name, userName, cmd));
}
