import type { Command } from 'commander';
import type { Ctx } from '../context.js';

export function registerMfa(program: Command, ctx: Ctx): void {
  const mfa = program.command('mfa').description('TOTP multi-factor authentication');
  mfa
    .command('enroll')
    .description('start TOTP enrolment: prints the secret and an otpauth:// URI for your authenticator app')
    .option('--json', 'print raw JSON')
    .action(async (flags: { json?: boolean }, cmd: Command) => {
      const res = await (await ctx.client(cmd)).post<{ secret: string; uri: string }>('/mfa/enroll');
      if (flags.json) return ctx.printJson(res);
      ctx.print(`Secret: ${res.secret}`);
      ctx.print(`URI:    ${res.uri}`);
      ctx.print('Add it to your authenticator app, then confirm with: gatehouse mfa verify CODE');
    });
  mfa
    .command('verify')
    .description('confirm enrolment with a code from your authenticator app')
    .argument('<code>', 'the current 6-digit code')
    .action(async (code: string, _flags: unknown, cmd: Command) => {
      await (await ctx.client(cmd)).post('/mfa/verify', { code });
      ctx.print('MFA enrolled: from now on sign-in and MFA resources ask for a code.');
    });
}
