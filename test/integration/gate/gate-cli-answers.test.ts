import { afterAll, beforeAll, beforeEach, expect, it } from 'vitest';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runJit } from '../../helpers/cli.ts';
import { closedPortUrl } from './closed-port.ts';

/**
 * How `jit gate verify` reads the broker's answers, against a stand-in
 * broker (a real HTTP server on loopback) that answers what each test sets:
 * the command checks every answer field by field (no zod, for its start
 * time) and must stay as strict as the zod schemas it replaced, and it
 * talks node:http (not fetch), which must fail closed the same way.
 */
type Handler = (req: IncomingMessage, res: ServerResponse) => void;
let server: Server;
let url: string;
let handler: Handler;
let seen: string[];
let dir: string;
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'jit-gate-answers-'));
  server = createServer((req, res) => {
    seen.push(`${req.method} ${req.url}`);
    req.resume();
    req.on('end', () => handler(req, res));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
  rmSync(dir, { recursive: true, force: true });
});
beforeEach(() => {
  seen = [];
});

const json = (status: number, body: unknown, headers: Record<string, string> = {}): Handler => (_req, res) => {
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(typeof body === 'string' ? body : JSON.stringify(body));
};
const VALID = { valid: true, agent: 'moltbot', request_id: 'req_1', expires_at: '2026-12-07T03:00:00.000Z', jti: 'j1' };
/** The credential is not checked by the stand-in: only how the answer is read is under test. */
const verify = (env: Record<string, string> = {}) =>
  runJit(['gate', 'verify', '--credential', 'a.b.c', '--repo', 'homelab/app', '--ref', 'refs/heads/agent/a'], { JIT_URL: url, JIT_JWKS_CACHE: join(dir, 'none.json'), ...env });

it('takes a verdict with fields it does not know (the broker sends the jti too)', async () => {
  handler = json(200, { ...VALID, extra: { nested: true } });
  const res = await verify();
  expect(res.code, res.stderr).toBe(0);
  expect(res.stdout).toBe('valid: agent moltbot, request req_1, expires 2026-12-07T03:00:00.000Z\n');
  expect(seen).toEqual(['POST /gate/verify']);
});

it('refuses a verdict whose fields have the wrong type, or a body that is not one', async () => {
  for (const body of [{ ...VALID, valid: 'true' }, { ...VALID, agent: 7 }, { valid: true, agent: 'moltbot', request_id: 'req_1' }, { valid: false }, [VALID], 'null', 'not json']) {
    handler = json(200, body);
    const res = await verify();
    expect(res.code, JSON.stringify(body)).toBe(1);
    expect(res.stderr, JSON.stringify(body)).toBe('invalid: broker answered 200 with an unexpected body\n');
  }
});

it('refuses with the broker\'s problem detail, printed inertly', async () => {
  handler = json(403, { type: 'about:blank', title: 'Forbidden', status: 403, detail: 'revoked\u202E by the operator' });
  const res = await verify();
  expect(res.code).toBe(1);
  expect(res.stderr).toBe('invalid: broker answered 403: revoked\\u{202E} by the operator\n');
});

it('counts a 5xx and a connection cut mid-answer as unreachable, and fails closed', async () => {
  handler = json(503, { detail: 'down' });
  const res = await verify();
  expect(res.code).toBe(1);
  expect(res.stderr).toMatch(/^invalid: broker unreachable at http:\/\/127\.0\.0\.1:\d+ \(it answered 503\); refusing, since offline verification is off/);

  handler = (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': '1000' });
    res.write('{"valid":true,');
    setImmediate(() => res.socket?.destroy());
  };
  const cut = await verify();
  expect(cut.code).toBe(1);
  expect(cut.stderr).toMatch(/^invalid: broker unreachable at http:\/\/127\.0\.0\.1:\d+ \(ECONNRESET\); refusing/);
});

it('follows no redirect: the credential is not sent on to another address', async () => {
  handler = (req, res) => {
    if (req.url === '/elsewhere/gate/verify') return json(200, VALID)(req, res);
    json(308, '', { location: `${url}/elsewhere/gate/verify` })(req, res);
  };
  const res = await verify();
  expect(res.code).toBe(1);
  expect(res.stderr).toBe("invalid: broker answered 308, a redirect, which jit does not follow (set JIT_URL to the broker's own address)\n");
  expect(seen).toEqual(['POST /gate/verify']);
});

it('reads at most 1 MiB of an answer', async () => {
  handler = json(200, JSON.stringify(VALID) + ' '.repeat(1 << 20));
  const res = await verify();
  expect(res.code).toBe(1);
  expect(res.stderr).toBe('invalid: broker answered 200 with an unexpected body\n');
});

it('caches only a JWKS of Ed25519 signing keys, and of each key only the fields it knows', async () => {
  const key = { kty: 'OKP', crv: 'Ed25519', x: '11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo', kid: 'k1', use: 'sig', alg: 'EdDSA' };
  const withJwks = (jwks: unknown): Handler => (req, res) => (req.url === '/.well-known/jwks.json' ? json(200, jwks)(req, res) : json(200, VALID)(req, res));
  const env = { JIT_GATE_OFFLINE_WINDOW: '10m' };

  for (const [i, jwks] of [{ keys: [key, { ...key, alg: 'RS256' }] }, { keys: [{ ...key, x: 1 }] }, { keys: key }, [key]].entries()) {
    handler = withJwks(jwks);
    const cache = join(dir, `refused-${i}.json`);
    const res = await verify({ ...env, JIT_JWKS_CACHE: cache });
    expect(res.code, res.stderr).toBe(0); // the broker's verdict still counts
    expect(existsSync(cache), JSON.stringify(jwks)).toBe(false);
  }

  handler = withJwks({ keys: [{ ...key, d: 'private part a broken broker leaked' }], other: 1 });
  const cache = join(dir, 'kept.json');
  seen = [];
  const res = await verify({ ...env, JIT_JWKS_CACHE: cache });
  expect(res.code, res.stderr).toBe(0);
  expect(seen).toEqual(['GET /.well-known/jwks.json', 'POST /gate/verify']);
  const cached = JSON.parse(readFileSync(cache, 'utf8'));
  expect(cached.keys).toEqual([key]);
  expect(Object.keys(cached).sort()).toEqual(['fetched_at', 'keys']);
  expect(Date.parse(cached.fetched_at)).toBeGreaterThan(Date.now() - 60_000);
});

it('offline, trusts no cache whose fetch time is not a UTC date-time of a real day', async () => {
  const key = { kty: 'OKP', crv: 'Ed25519', x: '11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo', kid: 'k1', use: 'sig', alg: 'EdDSA' };
  const now = new Date().toISOString();
  const down = await closedPortUrl();
  for (const [i, fetchedAt] of [now.replace('Z', '+00:00'), now.slice(0, 16) + 'Z', '2026-02-30T00:00:00Z', now.slice(0, 11) + '24:00:00Z', Date.now(), undefined].entries()) {
    const cache = join(dir, `bad-time-${i}.json`);
    writeFileSync(cache, JSON.stringify({ keys: [key], fetched_at: fetchedAt }), { mode: 0o600 });
    const res = await verify({ JIT_URL: down, JIT_GATE_OFFLINE_WINDOW: '10m', JIT_JWKS_CACHE: cache });
    expect(res.code, String(fetchedAt)).toBe(1);
    expect(res.stderr, String(fetchedAt)).toMatch(/the cached JWKS at .* is unreadable/);
  }
});

it('gives up on a broker that accepts the request but never answers (5 s), and fails closed', async () => {
  handler = () => {}; // holds the request open
  const res = await verify();
  expect(res.code).toBe(1);
  expect(res.stderr).toMatch(/^invalid: broker unreachable at http:\/\/127\.0\.0\.1:\d+ \(no answer within 5 s\); refusing/);
  expect(seen).toEqual(['POST /gate/verify']);
});
