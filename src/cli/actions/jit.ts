/** What `gatehouse resource jit` does; loaded only when it runs (../commands/resources.ts declares it). */
import type { Command } from 'commander';
import type { JitView } from '../../api/wire.js';
import type { JitSettings } from '../../core/model.js';
import { seg, type Ctx } from '../context.js';
import { hasJitFlags, mergeJitFlags, parseJitFlags, type JitFlags } from '../jit-flags.js';

/** With no setting flags it shows the settings; otherwise it merges the flags onto them and saves. */
export async function jit(ctx: Ctx, name: string, flags: JitFlags, cmd: Command): Promise<void> {
  const parsed = hasJitFlags(flags) ? parseJitFlags(flags) : undefined;
  const client = await ctx.client(cmd);
  const path = `/resources/${seg(name)}/jit`;
  const current = await client.get<JitView>(path);
  if (!parsed) {
    if (flags.json) return ctx.printJson(current);
    return printJit(ctx, current);
  }
  const view = await client.put<JitView>(path, mergeJitFlags(name, current.jit, parsed));
  if (flags.json) return ctx.printJson(view);
  ctx.print(`Updated the JIT settings of ${name}:`);
  printJit(ctx, view);
}

function printJit(ctx: Ctx, view: JitView): void {
  if (!view.supported) {
    ctx.print(`${view.resource}: ${view.protocol} resources have no ephemeral accounts or elevation; sessions use the vaulted account.`);
    return;
  }
  ctx.print(`${view.resource}: ${view.description}`);
  for (const line of jitLines(view.jit)) ctx.print(`  ${line}`);
  if (view.canConfigure) ctx.print(`You may change these settings: gatehouse resource jit ${view.resource} ...`);
}

/** `ephemeral: on (grants: a, b; inheritor: x)` and `elevate: off`, one line each. */
export function jitLines(jit: JitSettings | null): string[] {
  const e = jit?.ephemeral;
  const parts = e
    ? [
        `grants: ${e.grants.length ? e.grants.join(', ') : 'none'}`,
        e.sudo !== undefined ? `sudo: ${e.sudo}` : '',
        e.ou !== undefined ? `ou: ${e.ou}` : '',
        e.inheritor !== undefined ? `inheritor: ${e.inheritor}` : '',
        e.maxConnections !== undefined ? `max connections: ${e.maxConnections}` : '',
      ].filter(Boolean)
    : [];
  return [
    `ephemeral: ${e ? `on (${parts.join('; ')})` : 'off'}`,
    `elevate:   ${jit?.elevate ? `on (${jit.elevate.grants.join(', ')})` : 'off'}`,
  ];
}
