/**
 * Telegram's `parse_mode: "HTML"` as the Bot API server (tdlib) applies it:
 * only the supported tags, only `&lt; &gt; &amp; &quot;` and numeric
 * entities, a bare `&` kept literally, errors worded as tdlib words them
 * (with UTF-8 byte offsets), leading and trailing whitespace stripped.
 */

export interface MessageEntity {
  type: string;
  offset: number;
  length: number;
  url?: string;
  language?: string;
  custom_emoji_id?: string;
  unix_time?: number;
  date_time_format?: string;
}

export type ParseResult = { ok: true; text: string; entities: MessageEntity[] } | { ok: false; error: string };

const SIMPLE_TAGS: Record<string, string> = {
  b: 'bold',
  strong: 'bold',
  i: 'italic',
  em: 'italic',
  u: 'underline',
  ins: 'underline',
  s: 'strikethrough',
  strike: 'strikethrough',
  del: 'strikethrough',
  'tg-spoiler': 'spoiler',
  code: 'code',
  pre: 'pre',
};
const SUPPORTED = new Set([...Object.keys(SIMPLE_TAGS), 'a', 'span', 'blockquote', 'tg-emoji', 'tg-time']);
const NAMED_ENTITIES: Record<string, string> = { lt: '<', gt: '>', amp: '&', quot: '"' };

interface OpenTag {
  tag: string;
  start: number;
  entity: Omit<MessageEntity, 'offset' | 'length'> | undefined;
}

const isSpace = (c: string | undefined) => c === ' ' || c === '\n' || c === '\t' || c === '\r';

/** Decodes the entity starting at `html[i] === '&'`; undefined when it is not one Telegram accepts. */
function decodeEntity(html: string, i: number): { char: string; end: number } | undefined {
  const semi = html.indexOf(';', i + 1);
  if (semi === -1 || semi - i > 10) return undefined;
  const name = html.slice(i + 1, semi);
  if (name in NAMED_ENTITIES) return { char: NAMED_ENTITIES[name]!, end: semi + 1 };
  const num = /^#(?:x([0-9a-fA-F]{1,6})|([0-9]{1,7}))$/.exec(name);
  if (!num) return undefined;
  const code = num[1] !== undefined ? parseInt(num[1], 16) : Number(num[2]);
  if (code === 0 || code > 0x10ffff || (code >= 0xd800 && code <= 0xdfff)) return undefined;
  return { char: String.fromCodePoint(code), end: semi + 1 };
}

function parseAttributes(raw: string): Map<string, string> | string {
  const attrs = new Map<string, string>();
  let i = 0;
  while (i < raw.length) {
    while (isSpace(raw[i])) i++;
    if (i >= raw.length) break;
    const nameStart = i;
    while (i < raw.length && /[A-Za-z0-9_-]/.test(raw[i]!)) i++;
    const name = raw.slice(nameStart, i).toLowerCase();
    if (name === '') return `Expected attribute name`;
    while (isSpace(raw[i])) i++;
    if (raw[i] !== '=') {
      attrs.set(name, '');
      continue;
    }
    i++;
    while (isSpace(raw[i])) i++;
    let value: string;
    const quote = raw[i];
    if (quote === '"' || quote === "'") {
      const close = raw.indexOf(quote, i + 1);
      if (close === -1) return `Unclosed attribute value`;
      value = raw.slice(i + 1, close);
      i = close + 1;
    } else {
      const start = i;
      while (i < raw.length && !isSpace(raw[i])) i++;
      value = raw.slice(start, i);
    }
    attrs.set(name, value.replace(/&[^;]{1,10};/g, (m) => decodeEntity(m, 0)?.char ?? m));
  }
  return attrs;
}

/** Parses Telegram-flavoured HTML into plain text and entities, or the error tdlib reports. */
export function parseTelegramHtml(html: string): ParseResult {
  const byteOffset = (i: number) => Buffer.byteLength(html.slice(0, i), 'utf8');
  let text = '';
  const entities: MessageEntity[] = [];
  const stack: OpenTag[] = [];
  let i = 0;
  while (i < html.length) {
    const c = html[i]!;
    if (c === '&') {
      const decoded = decodeEntity(html, i);
      if (decoded) {
        text += decoded.char;
        i = decoded.end;
      } else {
        text += '&';
        i++;
      }
      continue;
    }
    if (c !== '<') {
      text += c;
      i++;
      continue;
    }
    const begin = i;
    const close = html.indexOf('>', i);
    if (html[i + 1] !== '/') {
      if (close === -1) return { ok: false, error: `Unclosed start tag at byte offset ${byteOffset(begin)}` };
      const inner = html.slice(i + 1, close);
      const nameEnd = inner.search(/[\s]/);
      const tag = (nameEnd === -1 ? inner : inner.slice(0, nameEnd)).toLowerCase();
      if (!SUPPORTED.has(tag)) return { ok: false, error: `Unsupported start tag "${tag}" at byte offset ${byteOffset(begin)}` };
      const attrs = parseAttributes(nameEnd === -1 ? '' : inner.slice(nameEnd));
      if (typeof attrs === 'string') return { ok: false, error: `${attrs} in the tag "${tag}" at byte offset ${byteOffset(begin)}` };
      let entity: OpenTag['entity'];
      if (tag in SIMPLE_TAGS) entity = { type: SIMPLE_TAGS[tag]! };
      else if (tag === 'a') {
        const href = attrs.get('href') ?? '';
        entity = href ? { type: 'text_link', url: href } : undefined;
      } else if (tag === 'span') {
        if (attrs.get('class') !== 'tg-spoiler') return { ok: false, error: `Tag "span" must have class "tg-spoiler" at byte offset ${byteOffset(begin)}` };
        entity = { type: 'spoiler' };
      } else if (tag === 'blockquote') entity = { type: attrs.has('expandable') ? 'expandable_blockquote' : 'blockquote' };
      else if (tag === 'tg-emoji') {
        const id = attrs.get('emoji-id');
        if (!id) return { ok: false, error: `Tag "tg-emoji" must have attribute "emoji-id" at byte offset ${byteOffset(begin)}` };
        entity = { type: 'custom_emoji', custom_emoji_id: id };
      } else {
        const unix = Number(attrs.get('unix'));
        if (!Number.isInteger(unix)) return { ok: false, error: `Tag "tg-time" must have attribute "unix" at byte offset ${byteOffset(begin)}` };
        entity = { type: 'date_time', unix_time: unix, ...(attrs.get('format') ? { date_time_format: attrs.get('format')! } : {}) };
      }
      // <pre><code class="language-x"> becomes one pre entity with a language.
      const parent = stack[stack.length - 1];
      if (tag === 'code' && parent?.tag === 'pre' && parent.entity && text.length === parent.start) {
        const lang = /^language-(.+)$/.exec(attrs.get('class') ?? '')?.[1];
        if (lang) {
          parent.entity.language = lang;
          entity = undefined;
        }
      }
      stack.push({ tag, start: text.length, entity });
      i = close + 1;
      continue;
    }
    // End tag.
    if (stack.length === 0) return { ok: false, error: `Unexpected end tag at byte offset ${byteOffset(begin)}` };
    if (close === -1) return { ok: false, error: `Unclosed end tag at byte offset ${byteOffset(begin)}` };
    const name = html.slice(i + 2, close).trim().toLowerCase();
    const open = stack.pop()!;
    if (name !== '' && name !== open.tag) {
      return { ok: false, error: `Unmatched end tag at byte offset ${byteOffset(begin)}, expected "</${open.tag}>", found "</${name}>"` };
    }
    if (open.entity && text.length > open.start) entities.push({ ...open.entity, offset: open.start, length: text.length - open.start });
    i = close + 1;
  }
  if (stack.length > 0) return { ok: false, error: `Can't find end tag corresponding to start tag "${stack[stack.length - 1]!.tag}"` };
  return { ok: true, ...trimFormatted(text, entities) };
}

/** Telegram strips leading and trailing whitespace and clips entities to what is left. */
export function trimFormatted(text: string, entities: MessageEntity[]): { text: string; entities: MessageEntity[] } {
  const lead = text.length - text.trimStart().length;
  const trimmed = text.trim();
  const out: MessageEntity[] = [];
  for (const e of entities) {
    const start = Math.max(0, e.offset - lead);
    const end = Math.min(trimmed.length, e.offset + e.length - lead);
    if (end > start) out.push({ ...e, offset: start, length: end - start });
  }
  out.sort((a, b) => a.offset - b.offset || b.length - a.length);
  return { text: trimmed, entities: out };
}
