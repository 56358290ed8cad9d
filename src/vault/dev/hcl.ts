/**
 * A parser for the subset of HCL 1 that Vault ACL policies use:
 * `key = value` assignments, labelled blocks (`path "x" { ... }`), strings,
 * numbers, booleans, lists and nested objects, with `#`, `//` and `/* *\/`
 * comments. JSON policies are converted into the same tree, as Vault's HCL
 * library accepts both. Heredocs are not supported.
 */

export type HclValue =
  | { type: 'string'; value: string }
  | { type: 'number'; value: number }
  | { type: 'bool'; value: boolean }
  | { type: 'list'; values: HclValue[] }
  | { type: 'object'; items: HclItem[] };

/** One `key [label…] = value` or `key [label…] { … }` entry. */
export interface HclItem {
  keys: string[];
  value: HclValue;
  line: number;
}

export class HclError extends Error {}

type TokenKind = 'ident' | 'string' | 'number' | 'bool' | '{' | '}' | '[' | ']' | '=' | ',' | 'eof';
interface Token {
  kind: TokenKind;
  text: string;
  line: number;
}

const ESCAPES: Record<string, string> = { n: '\n', t: '\t', r: '\r', '"': '"', '\\': '\\', '/': '/' };

function tokenize(src: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  let line = 1;
  const err = (msg: string) => new HclError(`At ${line}: ${msg}`);
  while (i < src.length) {
    const c = src[i]!;
    if (c === '\n') {
      line++;
      i++;
    } else if (c === ' ' || c === '\t' || c === '\r' || c === '\ufeff') {
      i++;
    } else if (c === '#' || (c === '/' && src[i + 1] === '/')) {
      while (i < src.length && src[i] !== '\n') i++;
    } else if (c === '/' && src[i + 1] === '*') {
      const end = src.indexOf('*/', i + 2);
      if (end < 0) throw err('comment not terminated');
      for (let j = i; j < end; j++) if (src[j] === '\n') line++;
      i = end + 2;
    } else if ('{}[]=,'.includes(c)) {
      out.push({ kind: c as TokenKind, text: c, line });
      i++;
    } else if (c === '"') {
      let j = i + 1;
      let text = '';
      for (;;) {
        if (j >= src.length || src[j] === '\n') throw err('literal not terminated');
        const d = src[j]!;
        if (d === '"') break;
        if (d === '\\') {
          const e = src[j + 1];
          if (e === 'u' && /^[0-9a-fA-F]{4}$/.test(src.slice(j + 2, j + 6))) {
            text += String.fromCharCode(parseInt(src.slice(j + 2, j + 6), 16));
            j += 6;
            continue;
          }
          if (e === undefined || !(e in ESCAPES)) throw err('invalid escape sequence');
          text += ESCAPES[e];
          j += 2;
          continue;
        }
        text += d;
        j++;
      }
      out.push({ kind: 'string', text, line });
      i = j + 1;
    } else if (/[-0-9]/.test(c)) {
      const m = /^-?\d+(\.\d+)?([eE][-+]?\d+)?/.exec(src.slice(i));
      if (!m) throw err(`illegal char "${c}"`);
      out.push({ kind: 'number', text: m[0], line });
      i += m[0].length;
    } else if (/[A-Za-z_]/.test(c)) {
      const m = /^[A-Za-z_][A-Za-z0-9_.-]*/.exec(src.slice(i))!;
      const kind = m[0] === 'true' || m[0] === 'false' ? 'bool' : 'ident';
      out.push({ kind, text: m[0], line });
      i += m[0].length;
    } else if (c === '<' && src[i + 1] === '<') {
      throw err('heredoc strings are not supported by the development Vault');
    } else {
      throw err(`illegal char "${c}"`);
    }
  }
  out.push({ kind: 'eof', text: '', line });
  return out;
}

class Parser {
  private pos = 0;
  constructor(private readonly tokens: Token[]) {}

  private peek(): Token {
    return this.tokens[this.pos]!;
  }
  private next(): Token {
    return this.tokens[this.pos++]!;
  }
  private fail(tok: Token, what: string): never {
    const found = tok.kind === 'eof' ? 'end of input' : `"${tok.text}"`;
    throw new HclError(`At ${tok.line}: expected ${what}, found ${found}`);
  }

  /** Items until `end` ('}' inside an object, 'eof' at top level). */
  body(end: '}' | 'eof'): HclItem[] {
    const items: HclItem[] = [];
    for (;;) {
      const tok = this.peek();
      if (tok.kind === end) return items;
      if (tok.kind === ',') {
        this.next();
        continue;
      }
      items.push(this.item());
    }
  }

  private item(): HclItem {
    const first = this.next();
    if (first.kind !== 'ident' && first.kind !== 'string') this.fail(first, 'a key');
    const keys = [first.text];
    while (this.peek().kind === 'ident' || this.peek().kind === 'string') keys.push(this.next().text);
    const tok = this.peek();
    if (tok.kind === '=') {
      this.next();
      return { keys, value: this.value(), line: first.line };
    }
    if (tok.kind === '{') return { keys, value: this.value(), line: first.line };
    return this.fail(tok, '"=" or "{"');
  }

  private value(): HclValue {
    const tok = this.next();
    switch (tok.kind) {
      case 'string':
        return { type: 'string', value: tok.text };
      case 'number':
        return { type: 'number', value: Number(tok.text) };
      case 'bool':
        return { type: 'bool', value: tok.text === 'true' };
      case '[': {
        const values: HclValue[] = [];
        for (;;) {
          if (this.peek().kind === ']') {
            this.next();
            return { type: 'list', values };
          }
          values.push(this.value());
          const sep = this.peek();
          if (sep.kind === ',') this.next();
          else if (sep.kind !== ']') this.fail(sep, '"," or "]"');
        }
      }
      case '{': {
        const items = this.body('}');
        this.next();
        return { type: 'object', items };
      }
      default:
        return this.fail(tok, 'a value');
    }
  }
}

/** Parses HCL text into its top-level items. */
export function parseHcl(src: string): HclItem[] {
  const parser = new Parser(tokenize(src));
  return parser.body('eof');
}

function fromJson(v: unknown): HclValue {
  if (typeof v === 'string') return { type: 'string', value: v };
  if (typeof v === 'number') return { type: 'number', value: v };
  if (typeof v === 'boolean') return { type: 'bool', value: v };
  if (Array.isArray(v)) return { type: 'list', values: v.map(fromJson) };
  if (v && typeof v === 'object') {
    return {
      type: 'object',
      items: Object.entries(v).map(([k, val]) => ({ keys: [k], value: fromJson(val), line: 1 })),
    };
  }
  throw new HclError('null values are not supported');
}

/**
 * Parses a policy document in either form. Text whose first non-blank
 * character is `{` is read as JSON, everything else as HCL.
 */
export function parseHclOrJson(src: string): HclItem[] {
  if (src.trimStart().startsWith('{')) {
    let json: unknown;
    try {
      json = JSON.parse(src);
    } catch (e) {
      throw new HclError(`invalid JSON: ${(e as Error).message}`);
    }
    const root = fromJson(json);
    if (root.type !== 'object') throw new HclError('does not contain a root object');
    return root.items;
  }
  return parseHcl(src);
}
