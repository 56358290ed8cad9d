/** Telegram's message limit: 4096 characters of text after entity parsing. */
export const TELEGRAM_TEXT_LIMIT = 4096;

/**
 * Escapes text for `parse_mode: "HTML"`. Everything an agent or a user
 * supplies (reason, paths, names) goes through this: an unescaped `<` makes
 * Telegram refuse the whole message, and a crafted one could forge markup.
 */
export function escapeHtml(text: string): string {
  return text.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;').replaceAll('"', '&quot;');
}

/**
 * What Telegram counts against the 4096 limit for HTML this module produced
 * (tags removed, the four escapes decoded, outer whitespace trimmed), in
 * UTF-16 code units like Telegram's entity offsets.
 */
export function visibleLength(html: string): number {
  return html
    .replace(/<[^>]*>/g, '')
    .replace(/&(?:lt|gt|amp|quot);/g, '_')
    .trim().length;
}

/** Cuts `text` to at most `max` UTF-16 units without splitting a surrogate pair. */
export function cut(text: string, max: number): string {
  if (text.length <= max) return text;
  let out = text.slice(0, Math.max(0, max));
  const last = out.charCodeAt(out.length - 1);
  if (last >= 0xd800 && last <= 0xdbff) out = out.slice(0, -1);
  return out;
}

/** `text`, shortened to `max` characters with a note of how much was dropped. */
export function ellipsize(text: string, max: number): string {
  if (text.length <= max) return text;
  // The note's own length depends on the count; two rounds settle it.
  let keep = max;
  for (let i = 0; i < 2; i++) {
    const note = `… (${text.length - keep} more characters)`;
    keep = Math.max(0, max - note.length);
  }
  const kept = cut(text, keep);
  return `${kept}… (${text.length - kept.length} more characters)`;
}

/** `2026-01-01 10:00:00 UTC` */
export function formatTime(ms: number): string {
  return `${new Date(ms).toISOString().slice(0, 19).replace('T', ' ')} UTC`;
}

/** A rough human duration: `45s`, `12m`, `3h 5m`, `2d 4h`. */
export function humanDuration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m`;
  const h = Math.floor(m / 60);
  if (h < 48) return m % 60 ? `${h}h ${m % 60}m` : `${h}h`;
  const d = Math.floor(h / 24);
  return h % 24 ? `${d}d ${h % 24}h` : `${d}d`;
}
