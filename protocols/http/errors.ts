/**
 * What a browser shows when Gatehouse says no: an HTTP status from one table and a small page
 * of the gateway's own (never the app's) with the sentence, the refusal code, the command
 * that fixes it, and a link to the vault. A new refusal code does not compile until it has a
 * line here; README.md lists the same table.
 */
import type { Refusal } from '../../src/broker/port.js';
export { STATUS_OF } from '../shared/http-status.js';
import { escapeHtml } from './codec.js';

/** The gateway's page for a refusal or an ended session. */
export function refusalPage(title: string, r: Refusal | { code: string; message: string; hint?: string }, vaultUrl: string | undefined): string {
  const fix = r.hint ? `<p>To fix: <code>${escapeHtml(r.hint)}</code></p>` : '';
  const vault = vaultUrl ? `<p><a href="${escapeHtml(vaultUrl)}">Open the Gatehouse vault</a></p>` : '';
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Gatehouse: ${escapeHtml(title)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem;color:#1b1f24}code{background:#f0f2f4;padding:.1rem .3rem}</style>
</head><body><h1>${escapeHtml(title)}</h1>
<p id="gatehouse-reason">Gatehouse: ${escapeHtml(r.message)} <small>(${escapeHtml(r.code)})</small></p>
${fix}${vault}</body></html>
`;
}
