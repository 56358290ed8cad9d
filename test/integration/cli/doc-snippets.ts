/**
 * Reads the shell snippets out of the Markdown docs so tests run (README) or
 * check (docs/api.md) exactly what a reader copies. Conventions the docs
 * follow:
 *
 * - commands live in ```sh blocks; a command continues over `\` line ends
 *   and over newlines inside quotes (a multi-line `-d '{…}'`);
 * - `# → text` after a command is what it prints; following `#` lines
 *   continue it; `…` stands for anything; a trailing `  (note)` is prose.
 */

export interface Snippet {
  /** The command as written (continuation lines joined with their newlines). */
  command: string;
  /** Expected output lines (`# →`), joined; empty when the doc shows none. */
  expect: string[];
  /** 1-based line in the Markdown file, for failure messages. */
  line: number;
}

/** The text of `## heading` up to the next `## ` heading. */
export function markdownSection(md: string, heading: string): string {
  const start = md.indexOf(`\n## ${heading}`);
  if (start < 0) throw new Error(`no "## ${heading}" section`);
  const next = md.indexOf('\n## ', start + 4);
  return md.slice(start, next < 0 ? undefined : next);
}

/** Fenced code blocks with the given info string, with the line where each starts. */
export function codeBlocks(md: string, lang: string): { code: string; line: number }[] {
  const out: { code: string; line: number }[] = [];
  const lines = md.split('\n');
  for (let i = 0; i < lines.length; i++) {
    if (lines[i]!.trim() !== '```' + lang) continue;
    const body: string[] = [];
    let j = i + 1;
    while (j < lines.length && lines[j]!.trim() !== '```') body.push(lines[j++]!);
    out.push({ code: body.join('\n'), line: i + 2 });
    i = j;
  }
  return out;
}

/** Splits a shell block into commands and their `# →` expectations. */
export function shellSnippets(code: string, firstLine = 1): Snippet[] {
  const out: Snippet[] = [];
  const lines = code.split('\n');
  let pending: string[] = [];
  let pendingLine = 0;
  let inExpect = false;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (pending.length === 0) {
      const t = line.trim();
      const arrow = /^#\s*→\s?(.*)$/.exec(t);
      if (arrow && out.length > 0) {
        out.at(-1)!.expect.push(arrow[1]!);
        inExpect = true;
        continue;
      }
      if (t.startsWith('#')) {
        if (inExpect && out.length > 0) out.at(-1)!.expect[out.at(-1)!.expect.length - 1] += ` ${t.replace(/^#\s*/, '')}`;
        continue;
      }
      inExpect = false;
      if (t === '') continue;
      pendingLine = firstLine + i;
    }
    pending.push(line);
    const text = pending.join('\n');
    if (!openQuote(text) && !/\\\s*$/.test(text)) {
      out.push({ command: text.trim(), expect: [], line: pendingLine });
      pending = [];
    }
  }
  if (pending.length > 0) throw new Error(`unterminated command at line ${pendingLine}: ${pending.join('\n')}`);
  return out;
}

function openQuote(text: string): boolean {
  let quote: '"' | "'" | undefined;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    if (quote === "'") {
      if (ch === "'") quote = undefined;
    } else if (quote === '"') {
      if (ch === '\\') i++;
      else if (ch === '"') quote = undefined;
    } else if (ch === '\\') i++;
    else if (ch === '#' && (i === 0 || /\s/.test(text[i - 1]!))) {
      // A comment runs to the end of its line.
      const nl = text.indexOf('\n', i);
      if (nl < 0) break;
      i = nl;
    } else if (ch === "'" || ch === '"') quote = ch;
  }
  return quote !== undefined;
}

/**
 * Splits a command into words as a POSIX shell would for these simple
 * cases: quotes, backslash escapes, `\`-newline; `$VAR` is kept literally.
 * Stops at an unquoted `#` comment.
 */
export function shellWords(command: string): string[] {
  const words: string[] = [];
  let word: string | undefined;
  for (let i = 0; i < command.length; i++) {
    const ch = command[i]!;
    if (ch === "'") {
      const end = command.indexOf("'", i + 1);
      word = (word ?? '') + command.slice(i + 1, end);
      i = end;
    } else if (ch === '"') {
      let s = '';
      for (i++; command[i] !== '"'; i++) {
        if (command[i] === '\\' && '"\\$`'.includes(command[i + 1]!)) i++;
        s += command[i];
      }
      word = (word ?? '') + s;
    } else if (ch === '\\') {
      if (command[i + 1] !== '\n') word = (word ?? '') + command[i + 1];
      i++;
    } else if (/\s/.test(ch)) {
      if (word !== undefined) words.push(word);
      word = undefined;
    } else if (ch === '#' && word === undefined) {
      break;
    } else word = (word ?? '') + ch;
  }
  if (word !== undefined) words.push(word);
  return words;
}

/** The HTTP request a `curl` command makes: method, URL, headers and body. */
export function curlRequest(command: string): { method: string; url: string; headers: Record<string, string>; body?: string } {
  const words = shellWords(command);
  if (words[0] !== 'curl') throw new Error(`not a curl command: ${command}`);
  let method: string | undefined;
  let url: string | undefined;
  let body: string | undefined;
  const headers: Record<string, string> = {};
  for (let i = 1; i < words.length; i++) {
    const w = words[i]!;
    if (w === '-X' || w === '--request') method = words[++i];
    else if (w === '-H' || w === '--header') {
      const h = words[++i]!;
      const colon = h.indexOf(':');
      headers[h.slice(0, colon).trim().toLowerCase()] = h.slice(colon + 1).trim();
    } else if (w === '-d' || w === '--data' || w === '--data-raw' || w === '--data-binary') body = words[++i];
    else if (['-o', '--output', '-w', '--write-out', '-u', '--user'].includes(w)) i++;
    else if (w.startsWith('-')) continue; // -s, -i, -f, --fail-with-body …: no argument
    else url ??= w;
  }
  if (!url) throw new Error(`curl command without a URL: ${command}`);
  return { method: method ?? (body !== undefined ? 'POST' : 'GET'), url, headers, ...(body !== undefined ? { body } : {}) };
}

/**
 * Whether `output` shows what the doc says it prints. The `…` placeholders
 * match anything; whitespace is ignored (tables print tabs where the doc
 * shows spaces, JSON continues over `#` lines). Returns the first fragment
 * not found, or undefined when everything matched in order.
 */
export function missingFragment(output: string, expectation: string): string | undefined {
  const squash = (s: string) => s.replace(/\s+/g, '');
  const text = squash(output);
  const wanted = expectation.replace(/\s{2,}\([^)]*\)\s*$/, '');
  let from = 0;
  for (const fragment of wanted.split('…').map(squash)) {
    if (fragment === '') continue;
    const at = text.indexOf(fragment, from);
    if (at < 0) return fragment;
    from = at + fragment.length;
  }
  return undefined;
}
