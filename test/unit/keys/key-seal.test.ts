import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../../src/config/config.ts';
import { KeyRingError } from '../../../src/keys/key-ring.ts';
import { UnsealError, kekBytes, open, seal, sealCheck, verifyCheck } from '../../../src/keys/key-seal.ts';

const kek = randomBytes(32);
const seed = randomBytes(32);

describe('sealing seeds under the key-encryption key (AES-256-GCM)', () => {
  it('opens what it sealed, with a fresh nonce each time; the sealed text holds no form of the seed', () => {
    const a = seal(kek, { kind: 'signing-key', kid: 'kid-a' }, seed);
    const b = seal(kek, { kind: 'signing-key', kid: 'kid-a' }, seed);
    expect(a).not.toBe(b);
    expect(a).toMatch(/^v1\.[A-Za-z0-9_-]{16}\.[A-Za-z0-9_-]{43}\.[A-Za-z0-9_-]{22}$/);
    expect(open(kek, { kind: 'signing-key', kid: 'kid-a' }, a).equals(seed)).toBe(true);
    for (const form of [seed.toString('base64url'), seed.toString('base64'), seed.toString('hex')]) expect(a).not.toContain(form);
  });

  it('refuses another KEK, another kid (a sealed seed moved to another row), and any altered byte', () => {
    const sealed = seal(kek, { kind: 'signing-key', kid: 'kid-a' }, seed);
    expect(() => open(randomBytes(32), { kind: 'signing-key', kid: 'kid-a' }, sealed)).toThrow(UnsealError);
    expect(() => open(kek, { kind: 'signing-key', kid: 'kid-b' }, sealed)).toThrow(/kid-b does not open/);
    const parts = sealed.split('.');
    const ct = Buffer.from(parts[2]!, 'base64url');
    ct[0]! ^= 1;
    expect(() => open(kek, { kind: 'signing-key', kid: 'kid-a' }, [parts[0], parts[1], ct.toString('base64url'), parts[3]].join('.'))).toThrow(UnsealError);
    expect(() => open(kek, { kind: 'signing-key', kid: 'kid-a' }, 'v2.x.y.z')).toThrow(UnsealError);
    expect(new UnsealError('x')).toBeInstanceOf(KeyRingError);
  });

  it('the check value tells a wrong KEK apart even with no seed stored', () => {
    const check = sealCheck(kek);
    expect(() => verifyCheck(kek, check)).not.toThrow();
    expect(() => verifyCheck(randomBytes(32), check)).toThrow(UnsealError);
    // A sealed seed is not a check value (its associated data differs).
    expect(() => verifyCheck(kek, seal(kek, { kind: 'signing-key', kid: 'k' }, seed))).toThrow(UnsealError);
    expect(kekBytes(kek.toString('base64')).equals(kek)).toBe(true);
  });
});

describe('JIT_KEY_ENCRYPTION_KEY and JIT_KEY_ENCRYPTION_KEY_FILE', () => {
  const good = randomBytes(32).toString('base64');

  it('takes base64 of 32 bytes from the variable or the file (trailing newline allowed)', () => {
    expect(loadConfig({ JIT_KEY_ENCRYPTION_KEY: good }).keyEncryptionKey).toBe(good);
    const dir = mkdtempSync(join(tmpdir(), 'jit-kek-'));
    try {
      writeFileSync(join(dir, 'kek'), `${good}\n`);
      expect(loadConfig({ JIT_KEY_ENCRYPTION_KEY_FILE: join(dir, 'kek') }).keyEncryptionKey).toBe(good);
      expect(() => loadConfig({ JIT_KEY_ENCRYPTION_KEY_FILE: join(dir, 'missing') })).toThrow(/^JIT_KEY_ENCRYPTION_KEY_FILE: cannot read .*missing: ENOENT$/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    expect(loadConfig({}).keyEncryptionKey).toBeUndefined();
  });

  it('refuses other lengths, hex, base64url and both at once, naming the variable and never the value', () => {
    for (const bad of [randomBytes(16).toString('base64'), randomBytes(32).toString('hex'), `${good.slice(0, -1)}`, good.replace(/=$/, '').replace(/\+/g, '-') + 'A']) {
      let err: unknown;
      try {
        loadConfig({ JIT_KEY_ENCRYPTION_KEY: bad });
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as ConfigError).variable).toBe('JIT_KEY_ENCRYPTION_KEY');
      expect((err as Error).message).toMatch(/must be base64 of exactly 32 random bytes/);
      expect((err as Error).message).not.toContain(bad);
    }
    expect(() => loadConfig({ JIT_KEY_ENCRYPTION_KEY: good, JIT_KEY_ENCRYPTION_KEY_FILE: '/x' })).toThrow(/not both/);
  });

  it('JIT_KEY_ENCRYPTION_KEY_PREVIOUS: validated the same way, and only beside a new key', () => {
    const previous = randomBytes(32).toString('base64');
    expect(loadConfig({ JIT_KEY_ENCRYPTION_KEY: good, JIT_KEY_ENCRYPTION_KEY_PREVIOUS: previous }).previousKeyEncryptionKey).toBe(previous);
    expect(() => loadConfig({ JIT_KEY_ENCRYPTION_KEY: good, JIT_KEY_ENCRYPTION_KEY_PREVIOUS: 'short' })).toThrow(/^JIT_KEY_ENCRYPTION_KEY_PREVIOUS: must be base64/);
    expect(() => loadConfig({ JIT_KEY_ENCRYPTION_KEY_PREVIOUS: previous })).toThrow(/^JIT_KEY_ENCRYPTION_KEY_PREVIOUS: set only beside the new/);
  });
});
