import { describe, expect, it } from 'vitest';
import { inertText, isPrintableAsciiWord } from '../../../src/lib/inert-text.ts';

describe('inertText', () => {
  it('keeps ordinary text and newlines as they are', () => {
    expect(inertText('Deploy grafana 10.4 — café, 日本語 ✓\nsecond line')).toBe('Deploy grafana 10.4 — café, 日本語 ✓\nsecond line');
  });

  it('escapes bidi overrides, zero-width and control characters visibly', () => {
    expect(inertText('a\u202Eb')).toBe('a\\u{202E}b');
    expect(inertText('x\u200By\u2066z')).toBe('x\\u{200B}y\\u{2066}z');
    expect(inertText('\u001b[2Jclear\r\tend')).toBe('\\u{001B}[2Jclear\\u{000D}\\u{0009}end');
    expect(inertText('line\u2028sep\u00A0nbsp')).toBe('line\\u{2028}sep\u00A0nbsp');
    expect(inertText('filler\u3164x')).toBe('filler\\u{3164}x');
  });
});

describe('isPrintableAsciiWord', () => {
  it('accepts printable ASCII without spaces only', () => {
    expect(isPrintableAsciiWord('hook:jit:dev:main')).toBe(true);
    expect(isPrintableAsciiWord('refs/heads/agent/x~1')).toBe(true);
    expect(isPrintableAsciiWord('has space')).toBe(false);
    expect(isPrintableAsciiWord('')).toBe(false);
    expect(isPrintableAsciiWord('caf\u00e9')).toBe(false);
    expect(isPrintableAsciiWord('a\nb')).toBe(false);
    expect(isPrintableAsciiWord('a\u202Eb')).toBe(false);
  });
});
