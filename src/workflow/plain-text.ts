import { ValidationError } from '../core/errors.js';

/**
 * Text a user or client hands the server and other people later read in a terminal
 * (names, request reasons, review comments, ticket ids) must not carry control
 * characters: ESC, CSI and OSC sequences rewrite an approver's screen or clipboard, and a
 * bare CR overwrites the line it is on. The CLI escapes what it prints as well; this is
 * the server's half, refusing such text where it comes in.
 *
 * Control characters are C0 (U+0000-U+001F), DEL (U+007F) and C1 (U+0080-U+009F, where
 * U+009B is a one-character CSI).
 */

// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;
// Free text from the vault's text areas may span lines: LF and TAB only, never CR.
// eslint-disable-next-line no-control-regex
const CONTROL_EXCEPT_LF_TAB = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/;

export type TextKind = 'line' | 'multiline';

/** True when `text` holds a control character (`multiline` allows LF and TAB). */
export function hasControlCharacter(text: string, kind: TextKind = 'line'): boolean {
  return (kind === 'line' ? CONTROL : CONTROL_EXCEPT_LF_TAB).test(text);
}

/** Throws a ValidationError naming `field` when `text` holds a control character. */
export function requirePlainText(field: string, text: string | undefined, kind: TextKind = 'line'): void {
  if (text !== undefined && hasControlCharacter(text, kind)) {
    const allowed = kind === 'multiline' ? ' (line breaks and tabs are fine)' : '';
    throw new ValidationError(field, `must not contain control characters such as ESC or CR${allowed}`);
  }
}

/** The same rule as a zod refinement message, for schemas (policy files, settings). */
export const CONTROL_CHARACTER_MESSAGE = 'must not contain control characters such as ESC or CR';
