import { request as httpRequest } from 'node:http';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { verifyAuditChain } from '../../../src/broker/audit.ts';
import { startHarness, type Harness } from '../../helpers/broker-harness.ts';

let h: Harness;
beforeEach(async () => {
  h = await startHarness();
});
afterEach(async () => {
  await h.close();
});

const auditRows = () => h.db.prepare('SELECT COUNT(*) FROM audit_log').pluck().get() as number;
const rows = (event: string) => h.db.prepare('SELECT data FROM audit_log WHERE event = ? ORDER BY seq').pluck().all(event).map((d) => JSON.parse(d as string));

/** `n` requests, `concurrency` at a time, to the broker on 127.0.0.1; the status of each. */
async function flood(n: number, concurrency: number, send: (i: number) => Promise<number>): Promise<number[]> {
  const statuses: number[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < n) statuses.push(await send(next++));
    }),
  );
  return statuses;
}

const denied = { resource: 'vault', tier: 1, reason: 'probe', vault_paths: [{ path: 'sys/policies/acl/root', capabilities: ['read'] }] };

describe('policy refusals (403)', () => {
  it('count toward the per-agent rate limit and are coalesced in the audit log', async () => {
    const token = await h.addAgent('moltbot');
    const before = auditRows();
    const started = performance.now();
    const statuses = await flood(600, 20, async () => (await h.call('POST', '/jit/request', { token, body: denied })).status);
    const seconds = (performance.now() - started) / 1000;
    const added = auditRows() - before;
    const count = (s: number) => statuses.filter((x) => x === s).length;
    console.log(`600 refusals in ${seconds.toFixed(1)} s: ${count(403)} × 403, ${count(429)} × 429, ${added} audit rows added`);

    // JIT_RATE_PER_MINUTE defaults to 60: the 61st request of the minute is refused with 429, refusals included.
    expect(count(403)).toBe(60);
    expect(count(429)).toBe(540);
    // The first refusal is audited in full; the 59 repeats wait for one suppressed-count entry.
    expect(added).toBe(1);
    const [first] = rows('request.rejected');
    expect(first).toMatchObject({ agent: 'moltbot', code: 'DENIED_BY_POLICY', pair: 'sys/policies/acl/root:read' });

    // The window closes: the next refusal after it writes the count of the last window, then is audited in full.
    h.clock.advance(61_000);
    expect((await h.call('POST', '/jit/request', { token, body: denied })).status).toBe(403);
    const [summary] = rows('audit.suppressed');
    expect(summary).toMatchObject({ event: 'request.rejected', suppressed: 59 });
    expect(summary.repeats).toEqual([{ seq: expect.any(Number), actor: 'agent:moltbot', count: 59 }]);
    expect(rows('request.rejected')).toHaveLength(2);
    expect((await verifyAuditChain(h.broker.deps.storage)).ok).toBe(true);
  });

  it('a malformed body (400) does not count toward the limit', async () => {
    const token = await h.addAgent('moltbot');
    for (let i = 0; i < 70; i++) expect((await h.call('POST', '/jit/request', { token, body: { resource: 'vault' } })).status).toBe(400);
    expect((await h.call('POST', '/jit/request', { token, body: denied })).status).toBe(403);
  });

  it('a session key the policy does not allow is a refusal too: audited and counted', async () => {
    const token = await h.addAgent('moltbot');
    const body = { ...denied, vault_paths: [{ path: 'homelab/data/docker/registry', capabilities: ['read'] }], session_key: 'hook:jit:elsewhere' };
    for (let i = 0; i < 60; i++) expect((await h.call('POST', '/jit/request', { token, body })).status).toBe(403);
    expect((await h.call('POST', '/jit/request', { token, body })).status).toBe(429);
    expect(rows('request.rejected')).toEqual([expect.objectContaining({ agent: 'moltbot', code: 'SESSION_NOT_ALLOWED', session_key: 'hook:jit:elsewhere' })]);
  });

  it('another agent is not held back by one agent’s refusals', async () => {
    const noisy = await h.addAgent('moltbot');
    const quiet = await h.addAgent('other');
    await flood(80, 10, async () => (await h.call('POST', '/jit/request', { token: noisy, body: denied })).status);
    const ok = { ...denied, vault_paths: [{ path: 'homelab/data/docker/registry', capabilities: ['read'] }] };
    expect((await h.call('POST', '/jit/request', { token: quiet, body: ok })).status).toBe(201);
  });
});

/** An agent call with a bad token from a chosen loopback address (Linux routes all of 127.0.0.0/8 to lo). */
function badTokenFrom(address: string): Promise<number> {
  const url = new URL(`${h.broker.url}/jit/requests/req_x`);
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: url.hostname, port: url.port, path: url.pathname, localAddress: address, headers: { authorization: 'Bearer jit_nope_nope' } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('failed authentication', () => {
  it('from many addresses is bounded by a global cap per window, the rest counted in one entry', async () => {
    const before = auditRows();
    const addresses = Array.from({ length: 300 }, (_, i) => `127.0.${1 + Math.floor(i / 200)}.${1 + (i % 200)}`);
    const statuses = await flood(addresses.length * 2, 20, (i) => badTokenFrom(addresses[i % addresses.length]!));
    expect(statuses.every((s) => s === 401)).toBe(true);
    const added = auditRows() - before;
    console.log(`600 failed authentications from 300 addresses: ${added} audit rows added`);
    expect(added).toBe(100);
    // The next failure after the window writes the window's count.
    h.clock.advance(61_000);
    expect(await badTokenFrom('127.0.0.1')).toBe(401);
    const [summary] = rows('audit.suppressed');
    expect(summary).toMatchObject({ event: 'auth.failed', suppressed: 500, over_cap: { count: 400, distinct: 200 } });
    expect(summary.repeats).toHaveLength(100);
    expect(summary.repeats.reduce((n: number, r: { count: number }) => n + r.count, 0)).toBe(100);
  });
});
