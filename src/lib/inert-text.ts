/**
 * Text written by an agent (a request's reason, a session key) is shown to
 * approvers in Telegram, the CLI and the console. Nothing in it may change
 * how the surrounding message looks: no control characters, no bidi
 * overrides, no invisible characters. These helpers make such text inert.
 */

/**
 * Characters that are invisible, reorder text or control the terminal:
 * C0/C1 controls (Cc), format characters such as bidi overrides and
 * zero-width joiners (Cf), line and paragraph separators (Zl, Zp), private
 * use (Co), unassigned code points (Cn) and the remaining default-ignorable
 * code points (Hangul fillers, variation selectors, ...).
 */
const UNSAFE = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Co}\p{Cn}\p{Default_Ignorable_Code_Point}]/gu;

function escapeCodePoint(ch: string): string {
  return `\\u{${ch.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}}`;
}

/**
 * The text with every unsafe character replaced by a visible escape such as
 * `\u{202E}`; plain newlines are kept (a reason may span lines), a carriage
 * return or tab is escaped like the rest. The result contains no character
 * that can hide or reorder what surrounds it.
 */
export function inertText(text: string): string {
  return text.replace(UNSAFE, (ch) => (ch === '\n' ? ch : escapeCodePoint(ch)));
}

/** Printable ASCII without spaces (0x21–0x7E), the alphabet of session keys and refs. */
export function isPrintableAsciiWord(text: string): boolean {
  return /^[\x21-\x7e]+$/.test(text);
}
