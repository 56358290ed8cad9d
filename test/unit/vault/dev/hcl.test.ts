import { describe, expect, it } from 'vitest';
import { HclError, parseHcl, parseHclOrJson } from '../../../../src/vault/dev/hcl.ts';

describe('parseHcl', () => {
  it('parses labelled blocks, lists and comments', () => {
    const items = parseHcl(`
# a comment
// another
/* a block
   comment */
path "secret/data/*" {
  capabilities = ["read", "list",]  # trailing comma is fine
}
name = "x"
`);
    expect(items).toHaveLength(2);
    expect(items[0]).toMatchObject({ keys: ['path', 'secret/data/*'], line: 6 });
    expect(items[0]!.value).toEqual({
      type: 'object',
      items: [
        {
          keys: ['capabilities'],
          line: 7,
          value: { type: 'list', values: [{ type: 'string', value: 'read' }, { type: 'string', value: 'list' }] },
        },
      ],
    });
    expect(items[1]).toMatchObject({ keys: ['name'], value: { type: 'string', value: 'x' } });
  });

  it('accepts several blocks on one line and string escapes', () => {
    const items = parseHcl('path "a" { capabilities = ["read"] } path "b\\"c" { policy = "deny" }');
    expect(items.map((i) => i.keys)).toEqual([['path', 'a'], ['path', 'b"c']]);
  });

  it('parses numbers, booleans and nested objects', () => {
    const [item] = parseHcl('x = { n = 3 b = true l = [1, -2.5] }');
    expect(item!.value).toEqual({
      type: 'object',
      items: [
        { keys: ['n'], line: 1, value: { type: 'number', value: 3 } },
        { keys: ['b'], line: 1, value: { type: 'bool', value: true } },
        { keys: ['l'], line: 1, value: { type: 'list', values: [{ type: 'number', value: 1 }, { type: 'number', value: -2.5 }] } },
      ],
    });
  });

  it.each([
    ['unterminated string', 'path "a { }', /literal not terminated/],
    ['missing brace', 'path "a" { capabilities = ["read"]', /expected a key, found end of input/],
    ['missing value', 'path "a" { capabilities = }', /expected a value/],
    ['stray character', 'path "a" { capabilities = ["read"] } ;', /illegal char/],
    ['unterminated comment', '/* never ends', /comment not terminated/],
    ['heredoc', 'x = <<EOF\nhi\nEOF', /heredoc/],
    ['key without value', 'path "a"', /expected "=" or "\{"/],
  ])('rejects %s', (_name, src, msg) => {
    expect(() => parseHcl(src)).toThrow(HclError);
    expect(() => parseHcl(src)).toThrow(msg);
  });
});

describe('parseHclOrJson', () => {
  it('reads JSON into the same tree', () => {
    const items = parseHclOrJson('{"path": {"a/*": {"capabilities": ["read"]}}}');
    expect(items[0]).toMatchObject({ keys: ['path'], value: { type: 'object', items: [{ keys: ['a/*'] }] } });
  });

  it('reports bad JSON', () => {
    expect(() => parseHclOrJson('{"path": ')).toThrow(/invalid JSON/);
  });
});
