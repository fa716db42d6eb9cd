import { RE2JS } from 're2js';
import { GatehouseError, ValidationError } from '../core/errors.js';

/**
 * Ticket-id patterns are written by administrators and run against what requesters type,
 * inside the single-threaded gateway. A backtracking engine (JavaScript's RegExp) needs
 * exponential time for patterns like `^(a+)+$`, and one request would stall every door
 * and monitor. So patterns run on RE2JS, a linear-time engine (automata, no backtracking),
 * and a pattern it cannot run (backreferences, lookaround) is refused when configured.
 *
 * Matching is a search, as `RegExp.prototype.test` is: anchor with `^...$` for a whole id.
 */

const FIELD = 'requireApproval.ticketPattern';

/**
 * RE2 program size bound. Linear time still scales with the program; ticket patterns are
 * small (`^OPS-[0-9]+$` is 10), so only large repetition counts come near this.
 */
export const MAX_TICKET_PATTERN_PROGRAM = 1000;

/** Compiles `pattern` or explains why it cannot be a ticket pattern. */
function compile(pattern: string): RE2JS | string {
  let re: RE2JS;
  try {
    re = RE2JS.compile(pattern);
  } catch (e) {
    return `cannot run in linear time (${(e as Error).message}); backreferences and lookaround are not supported`;
  }
  if (re.programSize() > MAX_TICKET_PATTERN_PROGRAM) return 'is too complex (lower its repetition counts)';
  // The CLI and the vault pre-check tickets with JavaScript's RegExp; keep both readings valid.
  try {
    new RegExp(pattern);
  } catch (e) {
    return `is not a valid regular expression (${(e as Error).message})`;
  }
  return re;
}

/** Configuration-time check; throws a ValidationError naming requireApproval.ticketPattern. */
export function checkTicketPatternSyntax(pattern: string): void {
  const re = compile(pattern);
  if (typeof re === 'string') throw new ValidationError(FIELD, re);
}

const cache = new Map<string, RE2JS>();
const CACHE_SIZE = 256;

/**
 * True when `ticket` matches `pattern`, in time linear in the ticket. A stored pattern
 * that does not pass the configuration check (written before it existed, or behind the
 * API's back) refuses the request instead of falling back to a backtracking engine.
 */
export function ticketMatches(pattern: string, ticket: string, resource: string): boolean {
  let re = cache.get(pattern);
  if (!re) {
    const compiled = compile(pattern);
    if (typeof compiled === 'string') {
      throw new GatehouseError('POLICY_INVALID', `the ticket pattern of ${resource} ${compiled}; an administrator must change it`, {
        field: FIELD, resource,
      });
    }
    if (cache.size >= CACHE_SIZE) cache.clear();
    cache.set(pattern, compiled);
    re = compiled;
  }
  return re.test(ticket);
}
