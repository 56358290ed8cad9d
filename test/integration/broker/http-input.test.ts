import { request as httpRequest } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHarness, type Harness } from '../../helpers/broker-harness.ts';

let h: Harness;
let token: string;
beforeAll(async () => {
  h = await startHarness({ env: { JIT_RATE_PER_MINUTE: '1000' } });
  token = await h.addAgent('moltbot');
});
afterAll(async () => {
  await h.close();
});

const valid = {
  resource: 'vault',
  tier: 1,
  reason: 'read',
  vault_paths: [{ path: 'homelab/data/docker/registry', capabilities: ['read'] }],
};

describe('hostile and malformed input gets a clear 4xx', () => {
  it.each([
    ['malformed JSON', { raw: '{"resource": "vault",' }, 400, /not valid JSON/],
    ['empty body', { raw: '' }, 400, /empty/],
    ['a JSON array', { body: [valid] }, 400, /object/i],
    ['an unknown field', { body: { ...valid, admin: true } }, 400, /unknown field\(s\): admin/],
    ['an unknown nested field', { body: { ...valid, vault_paths: [{ ...valid.vault_paths[0], policy: 'root' }] } }, 400, /vault_paths\[0\].*unknown field/],
    ['a bad tier', { body: { ...valid, tier: 4 } }, 400, /tier/],
    ['an unknown resource', { body: { ...valid, resource: 'aws' } }, 400, /resource/],
    ['an unknown capability', { body: { ...valid, vault_paths: [{ path: 'a/b', capabilities: ['fly'] }] } }, 400, /capability must be one of/],
    ['no paths', { body: { ...valid, vault_paths: [] } }, 400, /at least one path/],
    ['a bad ttl', { body: { ...valid, ttl: '10 years' } }, 400, /ttl/],
    ['a negative ttl', { body: { ...valid, ttl: -5 } }, 400, /ttl/],
    ['a missing reason', { body: { ...valid, reason: '  ' } }, 400, /reason/],
    ['a form body', { raw: 'a=b', headers: { 'content-type': 'application/x-www-form-urlencoded' } }, 415, /application\/json/],
  ])('%s', async (_name, input, status, detail) => {
    const res = await h.call('POST', '/jit/request', { token, ...input });
    expect(res.status).toBe(status);
    expect(res.headers.get('content-type')).toContain('application/problem+json');
    expect(res.body).toMatchObject({ status, type: expect.stringMatching(/^urn:jit-broker:problem:/), title: expect.any(String) });
    expect(res.body.detail).toMatch(detail);
    expect(JSON.stringify(res.body)).not.toMatch(/at .*\.ts:\d+/);
  });

  it('413 for a body over 64 KiB', async () => {
    const res = await h.call('POST', '/jit/request', { token, body: { ...valid, reason: 'x'.repeat(70_000) } });
    expect(res.status).toBe(413);
    expect(res.body.code).toBe('PAYLOAD_TOO_LARGE');
  });

  it.each([
    ['under the limit', 60_000, 201],
    ['over the limit', 70_000, 413],
  ])('a chunked body (no Content-Length) %s is counted as it is read', async (_what, size, status) => {
    // Whitespace after the object keeps it valid JSON of the size wanted.
    const json = JSON.stringify(valid);
    const body = json + ' '.repeat(size - json.length);
    const answer = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = httpRequest(`${h.broker.url}/jit/request`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'transfer-encoding': 'chunked' },
      });
      req.on('response', (res) => {
        let text = '';
        res.on('data', (d: Buffer) => (text += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode!, body: text }));
      });
      req.on('error', reject);
      // Several chunks, as a streaming client would send them.
      for (let i = 0; i < body.length; i += 8192) req.write(body.slice(i, i + 8192));
      req.end();
    });
    expect(answer.status).toBe(status);
    if (status === 413) expect(JSON.parse(answer.body).code).toBe('PAYLOAD_TOO_LARGE');
  });

  it.each([
    ['no Content-Type', undefined],
    ['a +json type with a charset', 'application/merge-patch+json; charset=utf-8'],
    ['an upper-case type', 'Application/JSON'],
  ])('a JSON body with %s is read as JSON', async (_what, type) => {
    const answer = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = httpRequest(`${h.broker.url}/jit/request`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, ...(type ? { 'content-type': type } : {}) },
      });
      req.on('response', (res) => {
        let text = '';
        res.on('data', (d: Buffer) => (text += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode!, body: text }));
      });
      req.on('error', reject);
      req.end(JSON.stringify(valid));
    });
    expect(answer.status, answer.body).toBe(201);
    expect(JSON.parse(answer.body)).toMatchObject({ status: 'issued', resource: 'vault' });
  });

  it('404 problem for unknown routes and malformed ids', async () => {
    expect((await h.call('GET', '/nope')).status).toBe(404);
    const res = await h.call('GET', '/jit/requests/../../etc/passwd', { token });
    expect(res.status).toBe(404);
    const bad = await h.call('GET', `/jit/requests/${encodeURIComponent("req_' OR 1=1 --")}`, { token });
    expect(bad.status).toBe(404);
  });

  it('keeps serving after all of the above', async () => {
    const res = await h.call('POST', '/jit/request', { token, body: valid });
    expect(res.status).toBe(201);
    expect(res.headers.get('x-request-id')).toMatch(/^http_/);
  });
});

describe('request limits (SPEC §11): what an approver is shown cannot be forged or cut', () => {
  const gate = { resource: 'gate', tier: 1, reason: 'push', repo: 'homelab/app', refs: ['refs/heads/agent/fix'] };
  const paths = (n: number, len = 30) => Array.from({ length: n }, (_, i) => ({ path: `homelab/data/docker/${String(i).padStart(2, '0')}-${'x'.repeat(len)}`, capabilities: ['read'] }));
  const refs = (n: number) => Array.from({ length: n }, (_, i) => `refs/heads/agent/fix-${i}`);

  it.each([
    ['a space', 'hook:jit:moltbot x'],
    ['a newline', 'hook:jit:moltbot\nVault paths (1):'],
    ['a tab', 'hook:jit:moltbot\t'],
    ['a bidi override', 'hook:jit:moltbot\u202e'],
    ['a zero-width space', 'hook:jit:\u200bmoltbot'],
    ['a non-ASCII letter', 'hook:jit:mоltbot'],
    ['a DEL', 'hook:jit:moltbot\u007f'],
  ])('400 for a session_key with %s', async (_what, session_key) => {
    const res = await h.call('POST', '/jit/request', { token, body: { ...valid, tier: 2, session_key } });
    expect(res.status).toBe(400);
    expect(res.body.code).toBe('BAD_REQUEST');
    expect(res.body.detail).toMatch(/^session_key: session_key must be printable ASCII without spaces/);
  });

  it('accepts a printable ASCII session_key the policy allows', async () => {
    const res = await h.call('POST', '/jit/request', { token, body: { ...valid, session_key: 'hook:jit:moltbot-~!#$%&' } });
    expect(res.status).toBe(201);
  });

  it.each([
    ['33 paths', { ...valid, vault_paths: paths(33) }, /^vault_paths: a request has at most 32 paths/],
    ['33 refs', { ...gate, refs: refs(33) }, /^refs: a request has at most 32 refs/],
    ['paths longer than 1280 characters together', { ...valid, vault_paths: paths(20, 60) }, /^vault_paths: the paths of a request are at most 1280 characters together \(these have 1660\)/],
    ['a ref that is not printable ASCII (a Cyrillic і)', { ...gate, refs: ['refs/heads/agent/fіx'] }, /^refs\[0\]: a ref must be printable ASCII/],
    ['a capability named twice', { ...valid, vault_paths: [{ path: 'homelab/data/docker/a', capabilities: ['read', 'read'] }] }, /capabilities: a capability is named twice/],
  ])('400 naming the limit for %s', async (_what, body, detail) => {
    const res = await h.call('POST', '/jit/request', { token, body });
    expect(res.status).toBe(400);
    expect(res.body.code).toBe('BAD_REQUEST');
    expect(res.body.detail).toMatch(detail);
  });

  it('accepts 32 paths and 32 refs (the limit itself)', async () => {
    expect((await h.call('POST', '/jit/request', { token, body: { ...valid, vault_paths: paths(32, 16) } })).status).toBe(201);
    expect((await h.call('POST', '/jit/request', { token, body: { ...gate, refs: refs(32) } })).status).toBe(201);
  });

  it('keeps any printable reason, newlines and control characters included (rendered inertly, not refused)', async () => {
    const reason = 'line one\nVault paths (1):\n• homelab/data/evil: read\u202e\u0007';
    const res = await h.call('POST', '/jit/request', { token, body: { ...valid, tier: 2, reason } });
    expect(res.status).toBe(202);
    expect((await h.call('GET', `/jit/requests/${res.body.id}`, { token })).body.reason).toBe(reason);
  });
});

describe('Idempotency-Key', () => {
  it('replays the first answer and creates nothing new', async () => {
    const headers = { 'idempotency-key': 'deploy-42' };
    const first = await h.call('POST', '/jit/request', { token, body: valid, headers });
    expect(first.status).toBe(201);
    const second = await h.call('POST', '/jit/request', { token, body: valid, headers });
    expect(second.status).toBe(200);
    expect(second.headers.get('idempotent-replayed')).toBe('true');
    expect(second.body).toMatchObject({ id: first.body.id, status: 'issued', credential: { accessor: first.body.credential.accessor } });
    expect(JSON.stringify(second.body)).not.toContain(first.body.credential.token);
    const conflict = await h.call('POST', '/jit/request', { token, body: { ...valid, reason: 'other' }, headers });
    expect(conflict.status).toBe(409);
    expect(conflict.body.code).toBe('IDEMPOTENCY_KEY_REUSED');
  });

  it('lets a retry with the same key try again after Vault failed', async () => {
    const headers = { 'idempotency-key': 'vault-flaky-1' };
    h.proxy.setFault(() => 'reset');
    expect((await h.call('POST', '/jit/request', { token, body: valid, headers })).status).toBe(503);
    h.proxy.setFault(undefined);
    const retry = await h.call('POST', '/jit/request', { token, body: valid, headers });
    expect(retry.status).toBe(201);
    const again = await h.call('POST', '/jit/request', { token, body: valid, headers });
    expect(again.status).toBe(200);
    expect(again.body.id).toBe(retry.body.id);
  });

  it('a key that is not printable ASCII is a 400 naming the header, before anything is created', async () => {
    for (const key of ['deploy 42', 'deploy\u00e9']) {
      const res = await h.call('POST', '/jit/request', { token, body: valid, headers: { 'idempotency-key': key } });
      expect(res.status, key).toBe(400);
      expect(res.headers.get('content-type')).toBe('application/problem+json');
      expect(res.body).toMatchObject({ code: 'BAD_REQUEST', detail: 'Idempotency-Key must be printable ASCII without spaces' });
    }
    // A bad body is reported first, as before the routes declared their contracts.
    const both = await h.call('POST', '/jit/request', { token, body: { ...valid, tier: 9 }, headers: { 'idempotency-key': 'deploy 42' } });
    expect(both.body.detail).toMatch(/^tier: /);
  });

  it('replays a pending request as 202', async () => {
    const headers = { 'idempotency-key': 'tier2-1' };
    const first = await h.call('POST', '/jit/request', { token, body: { ...valid, tier: 2 }, headers });
    const second = await h.call('POST', '/jit/request', { token, body: { ...valid, tier: 2 }, headers });
    expect(first.status).toBe(202);
    expect(second.status).toBe(202);
    expect(second.body.id).toBe(first.body.id);
  });
});
