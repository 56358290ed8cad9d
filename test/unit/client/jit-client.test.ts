import { afterEach, describe, expect, it } from 'vitest';
import {
  JitApiError,
  JitBadRequestError,
  JitClient,
  JitConflictError,
  JitGoneError,
  JitNotFoundError,
  JitPolicyDeniedError,
  JitRateLimitedError,
  JitUnauthorizedError,
  JitUnavailableError,
  JitUnreachableError,
  JitOptionError,
  JitWaitTimeoutError,
  JitStreamLostError,
  ClientConfigError,
  jitClientFromEnv,
  parseRetryAfter,
  type CredentialRequestInput,
  type JitClientOptions,
} from '../../../src/client/index.ts';
import { ManualClock } from '../../../src/lib/clock.ts';
import { closedPort, problem, startScriptedServer, type ScriptedResponse } from './scripted-server.ts';

const TOKEN = 'jit_0123456789abcdef_secret-part-of-the-agent-token-xyz';
const ID = 'req_0000000000aaaaaaaaaaaaaaaa';
const BODY: CredentialRequestInput = { resource: 'vault', tier: 1, reason: 'read the registry login', vault_paths: [{ path: 'homelab/data/docker/registry', capabilities: ['read'] }] };
const PENDING = { id: ID, status: 'pending', tier: 2, required_tier: 2, approval_expires_at: '2026-01-01T00:10:00.000Z' };
const ISSUED = {
  id: ID,
  status: 'issued',
  tier: 1,
  required_tier: 1,
  resource: 'vault',
  expires_at: '2026-01-01T01:00:00.000Z',
  credential: { type: 'vault_token', token: 'hvs.x', accessor: 'acc', policies: ['default'], expires_at: '2026-01-01T01:00:00.000Z' },
};
const view = (status: string) => ({ ...PENDING, status, resource: 'vault', agent: 'moltbot', reason: 'r', ttl_seconds: 60, session_key: null, rules: [], created_at: '', claim_expires_at: null, decision: null, credential: null });

let closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  const pending = closers;
  closers = [];
  await Promise.all(pending.map((c) => c()));
});

async function scripted(script: ScriptedResponse[], opts: Partial<JitClientOptions> = {}) {
  const server = await startScriptedServer(script);
  closers.push(server.close);
  const sleeps: number[] = [];
  const client = new JitClient({ baseUrl: server.url, token: TOKEN, sleep: async (ms) => void sleeps.push(ms), ...opts });
  return { client, seen: server.seen, sleeps };
}

describe('problem+json mapping', () => {
  it.each([
    [400, 'BAD_REQUEST', 'Bad request', JitBadRequestError, 'bad_request'],
    [401, 'UNAUTHORIZED', 'Unauthorized', JitUnauthorizedError, 'unauthorized'],
    [403, 'DENIED_BY_POLICY', 'Denied by policy', JitPolicyDeniedError, 'policy_denied'],
    [404, 'NOT_FOUND', 'Not found', JitNotFoundError, 'not_found'],
    [409, 'CONFLICT', 'Conflict', JitConflictError, 'conflict'],
    [410, 'GONE', 'Gone', JitGoneError, 'gone'],
    [413, 'PAYLOAD_TOO_LARGE', 'Payload too large', JitBadRequestError, 'bad_request'],
    [429, 'RATE_LIMITED', 'Too many requests', JitRateLimitedError, 'rate_limited'],
    [500, 'INTERNAL', 'Internal error', JitApiError, 'other'],
    [503, 'VAULT_UNAVAILABLE', 'Vault unavailable', JitUnavailableError, 'unavailable'],
  ] as const)('%i %s', async (status, code, title, Ctor, kind) => {
    const { client } = await scripted([{ status, body: problem(status, code, title, 'the detail', { request_id: 'http_1', pair: 'x' }) }], { maxRetries: 0 });
    const err = await client.status(ID).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Ctor);
    expect(err).toBeInstanceOf(JitApiError);
    expect(err).toMatchObject({ status, code, title, detail: 'the detail', kind, requestId: 'http_1', message: `${title}: the detail`, problem: { pair: 'x' } });
  });

  it('maps an answer that is not problem+json by its status', async () => {
    const { client } = await scripted([{ status: 502, headers: { 'content-type': 'text/plain' }, body: 'upstream down' }]);
    const err = (await client.status(ID).catch((e: unknown) => e)) as JitApiError;
    expect(err).toMatchObject({ status: 502, code: 'HTTP_502', title: 'Bad Gateway', detail: 'upstream down', kind: 'other' });
  });

  it('never puts the token in a message, even if the server echoes it', async () => {
    const { client } = await scripted([{ status: 401, body: problem(401, 'UNAUTHORIZED', 'Unauthorized', `token ${TOKEN} is unknown`) }]);
    const err = (await client.status(ID).catch((e: unknown) => e)) as JitApiError;
    expect(err.message).toBe('Unauthorized: token [redacted] is unknown');
    expect(JSON.stringify({ ...err, message: err.message, stack: err.stack })).not.toContain(TOKEN.slice(20));
  });

  it('does not follow a redirect with the token', async () => {
    const elsewhere = await startScriptedServer([]);
    closers.push(elsewhere.close);
    const { client } = await scripted([{ status: 307, headers: { location: `${elsewhere.url}/jit/request` } }]);
    const err = (await client.request(BODY).catch((e: unknown) => e)) as JitApiError;
    expect(err).toMatchObject({ status: 307, code: 'HTTP_307' });
    expect(err.detail).toContain('redirected to');
    expect(elsewhere.seen).toHaveLength(0);
  });

  it('sends the bearer token and JSON, and encodes the id into the path', async () => {
    const { client, seen } = await scripted([
      { status: 200, body: view('pending') },
      { status: 201, body: ISSUED },
      { status: 200, body: view('revoked') },
    ]);
    await client.status('req_a/../b');
    await client.claim(ID);
    expect(await client.revoke(ID)).toMatchObject({ status: 'revoked' });
    expect(seen.map((r) => `${r.method} ${r.url}`)).toEqual(['GET /jit/requests/req_a%2F..%2Fb', `POST /jit/requests/${ID}/claim`, `POST /jit/requests/${ID}/revoke`]);
    expect(seen[0]!.headers.authorization).toBe(`Bearer ${TOKEN}`);
  });

  it('returns pending, issued and replayed answers of POST /jit/request', async () => {
    const { client, seen } = await scripted([
      { status: 202, body: PENDING },
      { status: 201, body: ISSUED },
      { status: 200, headers: { 'idempotent-replayed': 'true' }, body: view('issued') },
    ]);
    expect(await client.request(BODY)).toEqual(PENDING);
    expect(await client.request(BODY)).toEqual(ISSUED);
    expect(await client.request(BODY, { idempotencyKey: 'k1' })).toMatchObject({ status: 'issued', replayed: true });
    expect(JSON.parse(seen[0]!.body)).toEqual(BODY);
    expect(seen[0]!.headers['content-type']).toBe('application/json');
  });
});

describe('Retry-After and retries', () => {
  it('waits Retry-After after a 429 and retries with the same Idempotency-Key', async () => {
    const { client, seen, sleeps } = await scripted([
      { status: 429, headers: { 'retry-after': '2' }, body: problem(429, 'TOO_MANY_PENDING', 'Too many pending requests', 'wait') },
      { status: 503, headers: { 'retry-after': '5' }, body: problem(503, 'UNAVAILABLE', 'Service unavailable', 'restarting') },
      { status: 202, body: PENDING },
    ]);
    expect(await client.request(BODY)).toEqual(PENDING);
    expect(sleeps).toEqual([2000, 5000]);
    const keys = seen.map((r) => r.headers['idempotency-key']);
    expect(keys[0]).toMatch(/^jit-client-[0-9a-f-]{36}$/);
    expect(new Set(keys)).toEqual(new Set([keys[0]]));
  });

  it('uses a fresh key per call, and the caller’s key when given', async () => {
    const { client, seen } = await scripted([
      { status: 202, body: PENDING },
      { status: 202, body: PENDING },
      { status: 429, headers: { 'retry-after': '0' }, body: problem(429, 'RATE_LIMITED', 'Too many requests', 'x') },
      { status: 202, body: PENDING },
    ]);
    await client.request(BODY);
    await client.request(BODY);
    await client.request(BODY, { idempotencyKey: 'deploy-42' });
    const keys = seen.map((r) => r.headers['idempotency-key']);
    expect(keys[0]).not.toBe(keys[1]);
    expect(keys.slice(2)).toEqual(['deploy-42', 'deploy-42']);
  });

  it('gives up after maxRetries, backing off 1, 2, 4 s when there is no Retry-After', async () => {
    const unavailable = { status: 503, body: problem(503, 'VAULT_UNAVAILABLE', 'Vault unavailable', 'down') };
    const { client, seen, sleeps } = await scripted([unavailable, unavailable, unavailable, unavailable, unavailable]);
    const err = await client.claim(ID).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(JitUnavailableError);
    expect(seen).toHaveLength(4);
    expect(sleeps).toEqual([1000, 2000, 4000]);
  });

  it('does not wait for a Retry-After longer than maxRetryDelayMs; the caller sees it', async () => {
    const { client, seen, sleeps } = await scripted([{ status: 429, headers: { 'retry-after': '60' }, body: problem(429, 'RATE_LIMITED', 'Too many requests', 'x') }]);
    const err = (await client.request(BODY).catch((e: unknown) => e)) as JitRateLimitedError;
    expect(err).toBeInstanceOf(JitRateLimitedError);
    expect(err.retryAfterSeconds).toBe(60);
    expect(seen).toHaveLength(1);
    expect(sleeps).toEqual([]);
  });

  it('honours an HTTP-date Retry-After against the injected clock', async () => {
    const clock = new ManualClock(Date.UTC(2026, 0, 1, 12, 0, 0));
    const { client, sleeps } = await scripted(
      [
        { status: 503, headers: { 'retry-after': 'Thu, 01 Jan 2026 12:00:07 GMT' }, body: problem(503, 'UNAVAILABLE', 'Service unavailable', 'x') },
        { status: 200, body: view('approved') },
      ],
      { clock },
    );
    expect((await client.status(ID)).status).toBe('approved');
    expect(sleeps).toEqual([7000]);
    expect(parseRetryAfter('garbage', 0)).toBeUndefined();
    expect(parseRetryAfter(null, 0)).toBeUndefined();
  });

  it('never retries other errors', async () => {
    const { client, seen } = await scripted([{ status: 403, body: problem(403, 'NOT_COVERED', 'Not covered by policy', 'x') }]);
    await expect(client.request(BODY)).rejects.toBeInstanceOf(JitPolicyDeniedError);
    expect(seen).toHaveLength(1);
  });

  it('starts afresh when the retried key only replays a request that failed on the 503', async () => {
    const { client, seen } = await scripted([
      { status: 503, headers: { 'retry-after': '1' }, body: problem(503, 'VAULT_UNAVAILABLE', 'Vault unavailable', 'x') },
      { status: 200, body: { ...view('failed'), failure: 'Vault unavailable' } },
      { status: 201, body: ISSUED },
    ]);
    expect(await client.request(BODY)).toEqual(ISSUED);
    const keys = seen.map((r) => r.headers['idempotency-key']);
    expect(keys[1]).toBe(keys[0]);
    expect(keys[2]).not.toBe(keys[0]);
  });

  it('keeps a caller-given key even then', async () => {
    const { client } = await scripted([
      { status: 503, headers: { 'retry-after': '1' }, body: problem(503, 'VAULT_UNAVAILABLE', 'Vault unavailable', 'x') },
      { status: 200, body: view('failed') },
    ]);
    expect(await client.request(BODY, { idempotencyKey: 'mine' })).toMatchObject({ status: 'failed', replayed: true });
  });
});

describe('unreachable broker', () => {
  it('throws JitUnreachableError at once, naming the URL but not the token', async () => {
    const port = await closedPort();
    const sleeps: number[] = [];
    const client = new JitClient({ baseUrl: `http://127.0.0.1:${port}/`, token: TOKEN, sleep: async (ms) => void sleeps.push(ms) });
    const err = (await client.request(BODY).catch((e: unknown) => e)) as JitUnreachableError;
    expect(err).toBeInstanceOf(JitUnreachableError);
    expect(err.message).toBe(`cannot reach the JIT broker at http://127.0.0.1:${port}: connection refused (is the broker running?) (ECONNREFUSED)`);
    expect(sleeps).toEqual([]);
  });

  it('times out a broker that never answers', async () => {
    const { createServer } = await import('node:net');
    const sockets: import('node:net').Socket[] = [];
    const silent = createServer((socket) => void sockets.push(socket));
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    closers.push(() => new Promise((r) => (sockets.forEach((s) => s.destroy()), silent.close(() => r()))));
    const port = (silent.address() as { port: number }).port;
    const client = new JitClient({ baseUrl: `http://127.0.0.1:${port}`, token: TOKEN, timeoutMs: 200 });
    await expect(client.status(ID)).rejects.toThrow(/^cannot reach the JIT broker at .*: no answer within 200 ms$/);
  });

  it('refuses base URLs that would leak or misroute', () => {
    expect(() => new JitClient({ baseUrl: 'http://user:pw@127.0.0.1:8787', token: TOKEN })).toThrow(/credentials/);
    expect(() => new JitClient({ baseUrl: 'ftp://127.0.0.1', token: TOKEN })).toThrow(/http/);
    expect(() => new JitClient({ baseUrl: 'not a url', token: TOKEN })).toThrow(/not a URL/);
    expect(() => new JitClient({ baseUrl: 'http://127.0.0.1', token: '' })).toThrow(/token/);
    const client = new JitClient({ baseUrl: 'http://127.0.0.1:8787/broker/', token: TOKEN });
    expect(client.baseUrl).toBe('http://127.0.0.1:8787/broker');
    expect(JSON.stringify(client)).not.toContain(TOKEN);
  });

  it('names the bad option in a field, not only in its message; jitClientFromEnv maps it to the variable', () => {
    const thrown = (options: JitClientOptions) => {
      try {
        new JitClient(options);
      } catch (err) {
        return err;
      }
      throw new Error('no error thrown');
    };
    const badToken = thrown({ baseUrl: 'http://127.0.0.1', token: 'a b' });
    expect(badToken).toBeInstanceOf(JitOptionError);
    expect(badToken).toBeInstanceOf(TypeError);
    expect(badToken).toMatchObject({ field: 'token', message: 'token must be a non-empty agent token without spaces' });
    expect(thrown({ baseUrl: 'ftp://127.0.0.1', token: TOKEN })).toMatchObject({ field: 'baseUrl', detail: 'must be http:// or https:// (got ftp:)' });

    const fromEnv = (env: Record<string, string>) => {
      try {
        jitClientFromEnv(env);
      } catch (err) {
        expect(err).toBeInstanceOf(ClientConfigError);
        return (err as Error).message;
      }
      throw new Error('no error thrown');
    };
    expect(fromEnv({ JIT_AGENT_TOKEN: 'a b' })).toBe('JIT_AGENT_TOKEN: token must be a non-empty agent token without spaces');
    expect(fromEnv({ JIT_AGENT_TOKEN: TOKEN, JIT_URL: 'not a url' })).toBe('JIT_URL: the value "not a url" is not a URL (expected e.g. http://127.0.0.1:8787)');
    expect(fromEnv({ JIT_AGENT_TOKEN: TOKEN, JIT_URL: 'https://x/?token=1' })).toBe('JIT_URL: the value must not have a query or fragment');
  });
});

describe('waitForDecision (the decision stream)', () => {
  const sse = (...events: [number, object][]) => ({
    status: 200,
    headers: { 'content-type': 'text/event-stream' },
    body: events.map(([id, data]) => `id: ${id}\ndata: ${JSON.stringify(data)}\n\n`).join(''),
  });
  const approved = { ...view('approved'), decision: { approver: 'telegram:1', decided_at: '', reason: null, granted: { vault_paths: [{ path: 'a/b', capabilities: ['read'] }], ttl_seconds: 300 }, narrowed: true } };

  it('follows GET …/events until the first decided state and never polls', async () => {
    const { client, seen, sleeps } = await scripted([sse([41, view('pending')], [44, approved], [47, view('issued')])]);
    const progress: string[] = [];
    const decided = await client.waitForDecision(ID, { onProgress: (p) => progress.push(`${p.kind}:${p.status}`) });
    expect(decided).toMatchObject({ status: 'approved', decision: { narrowed: true, granted: { ttl_seconds: 300 } } });
    expect(progress).toEqual(['state:pending']);
    expect(seen.map((r) => `${r.method} ${r.url}`)).toEqual([`GET /jit/requests/${ID}/events`]);
    expect(seen[0]!.headers).toMatchObject({ accept: 'text/event-stream', authorization: `Bearer ${TOKEN}` });
    expect(seen[0]!.headers['last-event-id']).toBeUndefined();
    expect(sleeps).toEqual([]);
  });

  it('reconnects a dropped stream with Last-Event-ID and misses nothing', async () => {
    const { client, seen, sleeps } = await scripted([sse([41, view('pending')]), sse([44, view('denied')])]);
    const kinds: string[] = [];
    const decided = await client.waitForDecision(ID, { onProgress: (p) => kinds.push(p.kind) });
    expect(decided.status).toBe('denied');
    expect(seen.map((r) => r.headers['last-event-id'])).toEqual([undefined, '41']);
    expect(kinds).toEqual(['state', 'reconnecting']);
    expect(sleeps).toEqual([250]);
  });

  it('retries 429 TOO_MANY_STREAMS after Retry-After and 5xx with backoff, then falls back to ONE GET', async () => {
    const { client, seen, sleeps } = await scripted([
      { status: 429, headers: { 'retry-after': '1' }, body: problem(429, 'TOO_MANY_STREAMS', 'Too many streams', 'x') },
      { status: 502, body: 'bad gateway' },
      { status: 503, body: problem(503, 'UNAVAILABLE', 'Unavailable', 'shutting down') },
      { status: 200, body: view('timed_out') },
    ]);
    expect((await client.waitForDecision(ID, { maxReconnects: 2 })).status).toBe('timed_out');
    expect(seen.map((r) => r.url)).toEqual([`/jit/requests/${ID}/events`, `/jit/requests/${ID}/events`, `/jit/requests/${ID}/events`, `/jit/requests/${ID}`]);
    expect(sleeps).toEqual([1000, 500]);
  });

  it('throws JitStreamLostError when the fallback GET finds it still pending', async () => {
    const { client, seen } = await scripted([{ status: 500, body: 'x' }, { status: 200, body: view('pending') }]);
    const err = (await client.waitForDecision(ID, { maxReconnects: 0 }).catch((e: unknown) => e)) as JitStreamLostError;
    expect(err).toBeInstanceOf(JitStreamLostError);
    expect(err).toMatchObject({ requestId: ID, request: { status: 'pending' } });
    expect(seen).toHaveLength(2);
  });

  it('does not retry a 404 (another agent\'s request, or none)', async () => {
    const { client, seen } = await scripted([{ status: 404, body: problem(404, 'NOT_FOUND', 'Not found', 'request') }]);
    await expect(client.waitForDecision(ID)).rejects.toBeInstanceOf(JitNotFoundError);
    expect(seen).toHaveLength(1);
  });

  it('reports heartbeats while pending, gives up at the timeout, and stops on abort', async () => {
    const { createServer } = await import('node:http');
    const server = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(`id: 3\ndata: ${JSON.stringify(view('pending'))}\n\n: heartbeat\n\n`);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    closers.push(() => new Promise((r) => (server.closeAllConnections(), server.close(() => r()))));
    const client = new JitClient({ baseUrl: `http://127.0.0.1:${(server.address() as { port: number }).port}`, token: TOKEN });
    const kinds: string[] = [];
    const err = (await client.waitForDecision(ID, { timeoutMs: 300, onProgress: (p) => kinds.push(p.kind) }).catch((e: unknown) => e)) as JitWaitTimeoutError;
    expect(err).toBeInstanceOf(JitWaitTimeoutError);
    expect(err.request).toMatchObject({ status: 'pending' });
    expect(kinds).toEqual(['state', 'heartbeat']);

    const ctl = new AbortController();
    const waiting = client.waitForDecision(ID, { signal: ctl.signal, onProgress: () => ctl.abort(new Error('caller gave up')) });
    await expect(waiting).rejects.toThrow('caller gave up');
  });

  it('reconnects a stream that goes silent (no heartbeat) after idleTimeoutMs', async () => {
    const { createServer } = await import('node:http');
    let n = 0;
    const server = createServer((req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      if (n++ === 0) res.write(`id: 3\ndata: ${JSON.stringify(view('pending'))}\n\n`);
      else res.end(`id: 4\ndata: ${JSON.stringify({ ...view('approved'), last: req.headers['last-event-id'] })}\n\n`);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    closers.push(() => new Promise((r) => (server.closeAllConnections(), server.close(() => r()))));
    const client = new JitClient({ baseUrl: `http://127.0.0.1:${(server.address() as { port: number }).port}`, token: TOKEN, sleep: async () => {} });
    expect(await client.waitForDecision(ID, { idleTimeoutMs: 200 })).toMatchObject({ status: 'approved', last: '3' });
  });
});
