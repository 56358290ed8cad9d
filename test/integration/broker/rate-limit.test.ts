import { afterAll, beforeAll, expect, it } from 'vitest';
import { startHarness, type Harness } from '../../helpers/broker-harness.ts';

let h: Harness;
beforeAll(async () => {
  h = await startHarness({ env: { JIT_RATE_PER_MINUTE: '3', JIT_MAX_PENDING: '2' } });
});
afterAll(async () => {
  await h.close();
});

const body = (tier: number) => ({
  resource: 'vault',
  tier,
  reason: 'r',
  vault_paths: [{ path: 'homelab/data/docker/registry', capabilities: ['read'] }],
});

it('limits pending requests per agent with 429 and Retry-After', async () => {
  const token = await h.addAgent('moltbot');
  expect((await h.call('POST', '/jit/request', { token, body: body(2) })).status).toBe(202);
  expect((await h.call('POST', '/jit/request', { token, body: body(2) })).status).toBe(202);
  const third = await h.call('POST', '/jit/request', { token, body: body(2) });
  expect(third.status).toBe(429);
  expect(third.body.code).toBe('TOO_MANY_PENDING');
  expect(Number(third.headers.get('retry-after'))).toBeGreaterThan(0);
  // A tier-1 request is not held back by pending ones.
  expect((await h.call('POST', '/jit/request', { token, body: body(1) })).status).toBe(201);
});

it('limits requests per minute per agent', async () => {
  const token = await h.addAgent('other');
  for (let i = 0; i < 3; i++) expect((await h.call('POST', '/jit/request', { token, body: body(1) })).status).toBe(201);
  const limited = await h.call('POST', '/jit/request', { token, body: body(1) });
  expect(limited.status).toBe(429);
  expect(limited.body.code).toBe('RATE_LIMITED');
  expect(Number(limited.headers.get('retry-after'))).toBeLessThanOrEqual(60);
  h.clock.advance(61_000);
  expect((await h.call('POST', '/jit/request', { token, body: body(1) })).status).toBe(201);
});
