import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chmodSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { signGateJwt } from '../../../src/broker/gate-jwt.ts';
import { runJit } from '../../helpers/cli.ts';
import { closedPortUrl } from './closed-port.ts';
import { startHarness, type Harness } from '../../helpers/broker-harness.ts';

let h: Harness;
let dir: string;
let token: string;
/** A loopback port nothing listens on (bound, then closed): connecting is refused. */
let DOWN: string;
beforeAll(async () => {
  DOWN = await closedPortUrl();
  h = await startHarness();
  token = await h.addAgent('moltbot');
  dir = mkdtempSync(join(tmpdir(), 'jit-gate-cli-'));
});
afterAll(async () => {
  await h.close();
  rmSync(dir, { recursive: true, force: true });
});

async function issue(ref = 'refs/heads/agent/a') {
  const res = await h.call('POST', '/jit/request', { token, body: { resource: 'gate', tier: 1, reason: 'push', repo: 'homelab/app', refs: [ref] } });
  expect(res.status).toBe(201);
  return { id: res.body.id as string, jwt: res.body.credential.credential as string };
}

const verifyArgs = (jwt: string, ref: string, repo = 'homelab/app') => ['gate', 'verify', '--credential', jwt, '--repo', repo, '--ref', ref];

it('verifies online; fails closed when the broker is unreachable and no offline window is set', async () => {
  const { id, jwt } = await issue();
  const env = { JIT_URL: h.broker.url, JIT_JWKS_CACHE: join(dir, 'closed.json') };
  const online = await runJit(verifyArgs(jwt, 'refs/heads/agent/a'), env);
  expect(online.code).toBe(0);
  expect(online.stdout).toContain(`request ${id}`);
  const down = await runJit(verifyArgs(jwt, 'refs/heads/agent/a'), { ...env, JIT_URL: DOWN });
  expect(down.code).toBe(1);
  expect(down.stderr).toMatch(/invalid: broker unreachable at http:\/\/127\.0\.0\.1:\d+ \(ECONNREFUSED\).*JIT_GATE_OFFLINE_WINDOW/s);
});

it('inside an explicit offline window, verifies against the JWKS it cached online', async () => {
  const { jwt } = await issue();
  const cache = join(dir, 'window.json');
  const env = { JIT_URL: h.broker.url, JIT_JWKS_CACHE: cache, JIT_GATE_OFFLINE_WINDOW: '10m' };
  expect((await runJit(verifyArgs(jwt, 'refs/heads/agent/a'), env)).code).toBe(0); // online: refreshes the cache
  expect(statSync(cache).mode & 0o777).toBe(0o600);

  const down = { ...env, JIT_URL: DOWN };
  const offline = await runJit(verifyArgs(jwt, 'refs/heads/agent/a'), down);
  expect(offline.code).toBe(0);
  expect(offline.stderr).toMatch(/verified offline .*revocation and the stored grant could not be checked/);
});

describe('refuses offline', () => {
  /** A cache as `jit gate verify` writes it, fetched `ageMs` ago. */
  async function cacheFetched(name: string, ageMs: number, mode = 0o600) {
    const path = join(dir, name);
    const jwks = (await h.call('GET', '/.well-known/jwks.json')).body;
    writeFileSync(path, JSON.stringify({ ...jwks, fetched_at: new Date(Date.now() - ageMs).toISOString() }), { mode });
    chmodSync(path, mode);
    return path;
  }
  const down = (cache: string, window = '10m') => ({ JIT_URL: DOWN, JIT_JWKS_CACHE: cache, JIT_GATE_OFFLINE_WINDOW: window });

  it('a ref outside the grant, against a fresh cache', async () => {
    const { jwt } = await issue();
    const res = await runJit(verifyArgs(jwt, 'refs/heads/main'), down(await cacheFetched('fresh-bad-ref.json', 0)));
    expect(res.code).toBe(1);
    expect(res.stderr).toContain('not among the granted refs');
  });

  it('a JWKS cached before the window', async () => {
    const { jwt } = await issue();
    const res = await runJit(verifyArgs(jwt, 'refs/heads/agent/a'), down(await cacheFetched('stale.json', 11 * 60_000)));
    expect(res.code).toBe(1);
    expect(res.stderr).toMatch(/cached JWKS .* older than the offline window \(10m\)/);
  });

  it('a cache others could write (anyone who can write it could add a key)', async () => {
    const { jwt } = await issue();
    const res = await runJit(verifyArgs(jwt, 'refs/heads/agent/a'), down(await cacheFetched('writable.json', 0, 0o666)));
    expect(res.code).toBe(1);
    expect(res.stderr).toContain('writable by others');
  });

  it('a pusher\'s token whose header names a bidi-override "algorithm": the reason is printed inertly', async () => {
    const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
    // JSON.stringify leaves U+202E and the C1 control U+009B (CSI) as they are.
    const forged = `${b64({ alg: '\u202eAdDE\u009b2J', typ: 'JWT' })}.${b64({ sub: 'x' })}.${Buffer.alloc(64).toString('base64url')}`;
    const res = await runJit(verifyArgs(forged, 'refs/heads/agent/a'), down(await cacheFetched('forged-alg.json', 0)));
    expect(res.code).toBe(1);
    expect(res.stderr).toContain('invalid: unsupported algorithm "\\u{202E}AdDE\\u{009B}2J"');
    expect(res.stderr).not.toMatch(/[\u0080-\u009f\u202a-\u202e\u2066-\u2069]/);
  });

  it('without a cache, and with a window over a day (exit 2)', async () => {
    const { jwt } = await issue();
    const noCache = await runJit(verifyArgs(jwt, 'refs/heads/agent/a'), down(join(dir, 'none.json')));
    expect(noCache.code).toBe(1);
    expect(noCache.stderr).toContain('no cached JWKS');
    const badWindow = await runJit(verifyArgs(jwt, 'refs/heads/agent/a'), down(await cacheFetched('fresh.json', 0), '30d'));
    expect(badWindow.code).toBe(2);
    expect(badWindow.stderr).toContain('JIT_GATE_OFFLINE_WINDOW');
  });
});

it('refuses a ref outside the grant online', async () => {
  const { jwt } = await issue();
  const wrongRef = await runJit(verifyArgs(jwt, 'refs/heads/main'), { JIT_URL: h.broker.url, JIT_JWKS_CACHE: join(dir, 'closed.json') });
  expect(wrongRef.code).toBe(1);
  expect(wrongRef.stderr).toContain('not among the granted refs');
});

it('refuses a validly signed credential that differs from the stored grant', async () => {
  const { jwt } = await issue('refs/heads/agent/b');
  const claims = JSON.parse(Buffer.from(jwt.split('.')[1]!, 'base64url').toString());
  const wider = signGateJwt(h.broker.deps.keys, { ...claims, refs: ['refs/heads/*'] });
  const res = await runJit(verifyArgs(wider, 'refs/heads/main'), { JIT_URL: h.broker.url, JIT_JWKS_CACHE: join(dir, 'grant.json') });
  expect(res.code).toBe(1);
  expect(res.stderr).toContain('does not match the grant (refs)');
});

it.each([
  ['a control character in --ref', 'homelab/app', 'refs/heads/agent/a\u001b[2J'],
  ['non-ASCII in --ref', 'homelab/app', 'refs/heads/agent/\u00e4'],
  ['non-ASCII in --repo', 'homelab/\u0430pp', 'refs/heads/agent/a'],
])('refuses %s without asking the broker', async (_name, repo, ref) => {
  const { jwt } = await issue();
  const res = await runJit(verifyArgs(jwt, ref, repo), { JIT_URL: DOWN, JIT_JWKS_CACHE: join(dir, 'ascii.json') });
  expect(res.code).toBe(1);
  expect(res.stderr).toMatch(/^invalid: --(ref|repo) must be printable ASCII without spaces/);
  expect(res.stderr).not.toMatch(/[\u0000-\u0008\u001b\u007f]/);
});
