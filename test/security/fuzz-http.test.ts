import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { createServedApp } from '../../src/served-app.ts';
import { startHarness, type Harness } from '../helpers/broker-harness.ts';

/**
 * Hostile input against every endpoint of the real app (in-process through
 * app.fetch for speed; the app is the one the server runs, with the real
 * development Vault behind it). Whatever arrives, the answer is never a 5xx
 * and the broker keeps serving.
 */
let h: Harness;
let app: ReturnType<typeof createServedApp>;
let token: string;
let ownId: string;
const tally = { cases: 0, byStatus: new Map<number, number>() };

beforeAll(async () => {
  h = await startHarness({ env: { JIT_RATE_PER_MINUTE: '100000', JIT_MAX_PENDING: '10000', LOG_LEVEL: 'silent' } });
  app = createServedApp(h.broker.deps, h.broker.streams);
  token = await h.addAgent('moltbot');
  const res = await h.call('POST', '/jit/request', { token, body: { resource: 'vault', tier: 1, reason: 'r', vault_paths: [{ path: 'homelab/data/docker/registry', capabilities: ['read'] }] } });
  ownId = res.body.id;
});
afterAll(async () => {
  const statuses = [...tally.byStatus.entries()].sort((a, b) => a[0] - b[0]).map(([s, n]) => `${s}:${n}`).join(' ');
  console.log(`fuzz tally: ${tally.cases} cases, 5xx seen: ${[...tally.byStatus].filter(([s]) => s >= 500).reduce((n, [, c]) => n + c, 0)}, statuses ${statuses}`);
  await h.close();
});

async function send(method: string, path: string, headers: Record<string, string>, body?: string): Promise<number> {
  const res = await app.request(`http://127.0.0.1${path}`, { method, headers, ...(body !== undefined && method !== 'GET' && method !== 'HEAD' ? { body } : {}) });
  await res.arrayBuffer();
  tally.cases++;
  tally.byStatus.set(res.status, (tally.byStatus.get(res.status) ?? 0) + 1);
  return res.status;
}

const validVault = { resource: 'vault', tier: 1, reason: 'read', vault_paths: [{ path: 'homelab/data/docker/registry', capabilities: ['read'] }] };

const pathArb = fc.oneof(
  { arbitrary: fc.constant('/jit/request'), weight: 6 },
  fc.constantFrom('/jit/request', '/healthz', '/.well-known/jwks.json', '/gate/verify', '/telegram/webhook', '/metrics', '/openapi.json'),
  fc.string().map((s) => `/jit/requests/${encodeURIComponent(s)}`),
  fc.constantFrom('claim', 'revoke', '').map((verb) => `/jit/requests/${'req_'}${'0'.repeat(26)}/${verb}`),
  fc.constant(null).map(() => `/jit/requests/${ownId}`),
  fc.constantFrom('/jit/requests/../../etc/passwd', '/jit/requests/%2e%2e%2f', '/jit//request', '/JIT/REQUEST', '/jit/request/', '/%00', '/jit/requests/req_%00'),
  fc.webPath(),
);

const bodyArb = fc.oneof(
  { arbitrary: fc.constant(JSON.stringify(validVault)), weight: 1 },
  fc.json(),
  fc.string(),
  fc.jsonValue().map((v) => JSON.stringify(v)),
  // Valid shape with each field replaced by anything, plus unknown keys.
  fc.record(
    {
      resource: fc.oneof(fc.constantFrom('vault', 'gate'), fc.jsonValue()),
      tier: fc.oneof(fc.constantFrom(1, 2, 3), fc.jsonValue()),
      reason: fc.oneof(fc.string(), fc.jsonValue()),
      vault_paths: fc.oneof(
        fc.array(fc.record({ path: fc.oneof(fc.string(), fc.constantFrom('homelab/data/docker/registry', 'homelab/data/../vault/x', 'homelab%2Fdata', 'homelab/data/dоcker/registry', 'sys/*', 'auth/token/create', '+/+', 'a'.repeat(600))), capabilities: fc.array(fc.oneof(fc.constantFrom('read', 'update', 'sudo', 'root', 'deny', 'list'), fc.string()), { maxLength: 20 }) }, { requiredKeys: [] }), { maxLength: 70 }),
        fc.jsonValue(),
      ),
      repo: fc.oneof(fc.string(), fc.constantFrom('homelab/app', '../x', 'homelab/*')),
      refs: fc.oneof(fc.array(fc.string(), { maxLength: 70 }), fc.jsonValue()),
      ttl: fc.oneof(fc.integer(), fc.double(), fc.string(), fc.constantFrom('1h', '90s', '-1m', '1e9', '99999999999d')),
      session_key: fc.oneof(fc.string(), fc.constantFrom('hook:jit:moltbot', 'hook:jit:other')),
      extra: fc.jsonValue(),
    },
    { requiredKeys: ['resource', 'tier', 'reason'] },
  ).map((o) => JSON.stringify(o)),
);

const headersArb = fc.record(
  {
    authorization: fc.oneof({ arbitrary: fc.constant('TOKEN'), weight: 6 }, fc.string(), fc.constant('Bearer jit_0123456789abcdef_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA'), fc.constant('Basic Zm9vOmJhcg==')),
    'content-type': fc.oneof({ arbitrary: fc.constant('application/json'), weight: 8 }, fc.constantFrom( 'text/plain', 'application/x-www-form-urlencoded', 'application/merge-patch+json', 'application/json; charset=utf-8', '')),
    'idempotency-key': fc.oneof(fc.string({ maxLength: 300 }), fc.constant('same-key')),
    'x-telegram-bot-api-secret-token': fc.string(),
  },
  { requiredKeys: ['authorization', 'content-type'] },
);

const methodArb = fc.oneof({ arbitrary: fc.constant('POST'), weight: 8 }, fc.constantFrom('GET', 'PUT', 'DELETE', 'PATCH', 'OPTIONS'));

describe('fuzzing every endpoint', () => {
  it('never answers 5xx to 10,000 generated requests', async () => {
    await fc.assert(
      fc.asyncProperty(methodArb, pathArb, headersArb, bodyArb, async (method, path, rawHeaders, body) => {
        const headers: Record<string, string> = {};
        for (const [k, v] of Object.entries(rawHeaders)) {
          const value = v === 'TOKEN' ? `Bearer ${token}` : v;
          // Header values that fetch itself refuses are not requests a server can receive.
          if (/^[\t\x20-\x7e\x80-\xff]*$/.test(value)) headers[k] = value;
        }
        const status = await send(method, path, headers, body);
        expect(status, `${method} ${path}`).toBeLessThan(500);
      }),
      { numRuns: 10_000, seed: 20261123 },
    );
    expect((await h.call('GET', '/healthz')).status).toBe(200);
  }, 240_000);

  it('refuses path escalation attempts with a 4xx naming the problem', async () => {
    const attempts = [
      'homelab/data/docker/../vault/unseal',
      'homelab/data/docker/%2e%2e/vault',
      'homelab%2Fdata%2Fvault%2Fx',
      'homelab/data/docker/registry/',
      'homelab/data/dоcker/registry', // Cyrillic о
      'homelab/data/docker/\u202eyrtsiger',
      'homelab/data/docker/*',
      'homelab/data/+/registry',
      '/homelab/data/docker/registry',
      `homelab/data/docker/${'a'.repeat(600)}`,
      'homelab/data/docker/reg\u0000istry',
      'sys/policies/acl/jit-anything',
      'auth/token/create-orphan',
    ];
    for (const path of attempts) {
      const status = await send('POST', '/jit/request', { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, JSON.stringify({ ...validVault, vault_paths: [{ path, capabilities: ['read'] }] }));
      expect([400, 403], path).toContain(status);
    }
    const many = Array.from({ length: 10_000 }, (_, i) => ({ path: `homelab/data/docker/s${i}`, capabilities: ['read'] }));
    expect(await send('POST', '/jit/request', { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, JSON.stringify({ ...validVault, vault_paths: many }))).toBe(413);
    const sixtyFive = many.slice(0, 65);
    expect(await send('POST', '/jit/request', { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, JSON.stringify({ ...validVault, vault_paths: sixtyFive }))).toBe(400);
  });

  it('refuses every session key holding a space, control, bidi or invisible character (400), whatever surrounds it', async () => {
    const unsafe = fc.oneof(
      fc.constantFrom(' ', '\n', '\r', '\t', '\u0000', '\u007f', '\u0085', '\u00a0', '\u200b', '\u200d', '\u2028', '\u202e', '\u2066', '\ufeff', '\u3000'),
      fc.integer({ min: 0, max: 0x1f }).map((c) => String.fromCharCode(c)),
      fc.integer({ min: 0x80, max: 0xffff }).filter((c) => c < 0xd800 || c > 0xdfff).map((c) => String.fromCharCode(c)),
    );
    const printable = fc.string({ unit: fc.integer({ min: 0x21, max: 0x7e }).map((c) => String.fromCharCode(c)), maxLength: 40 });
    await fc.assert(
      fc.asyncProperty(printable, unsafe, printable, async (before, bad, after) => {
        const body = JSON.stringify({ ...validVault, tier: 2, session_key: `hook:jit:moltbot${before}${bad}${after}` });
        const res = await app.request('http://127.0.0.1/jit/request', { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body });
        const problem = (await res.json()) as { detail: string };
        expect(res.status).toBe(400);
        expect(problem.detail).toMatch(/^session_key: session_key must be printable ASCII/);
      }),
      { numRuns: 500, seed: 20261207 },
    );
  });

  it('gives guessed tokens nothing: 1,000 random tokens with the right shape', async () => {
    const hex = fc.string({ unit: fc.constantFrom(...'0123456789abcdef'), minLength: 16, maxLength: 16 });
    const b64url = fc.string({ unit: fc.constantFrom(...'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'), minLength: 43, maxLength: 43 });
    const guesses = fc.sample(fc.tuple(hex, b64url), { numRuns: 1000, seed: 7 });
    // Half of them reuse the real token id, so the lookup finds the row and only the secret differs.
    const realId = token.split('_')[1]!;
    for (const [i, [id, secret]] of guesses.entries()) {
      const guess = `jit_${i % 2 ? realId : id}_${secret}`;
      expect(await send('GET', `/jit/requests/${ownId}`, { authorization: `Bearer ${guess}` })).toBe(401);
    }
    // The real owner still gets in; the auth-failure audit stayed bounded.
    expect(await send('GET', `/jit/requests/${ownId}`, { authorization: `Bearer ${token}` })).toBe(200);
    const audited = h.db.prepare(`SELECT COUNT(*) FROM audit_log WHERE event = 'auth.failed'`).pluck().get() as number;
    expect(audited).toBeLessThanOrEqual(5);
  });
});
