import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { VaultError } from '../../../src/vault/errors.ts';
import { createHttpTransport } from '../../../src/vault/http-transport.ts';
import type { HttpTransport, RequestFn } from '../../../src/vault/http-transport.ts';
import { createVaultClient } from '../../../src/vault/node-vault-client.ts';

const TOKEN = 'hvs.TransportTestSecret0123456789';

type Handler = (req: IncomingMessage, body: string, res: ServerResponse) => void;

/** A node:http server on 127.0.0.1:0 that records the sockets it accepted and the requests it saw. */
async function startServer(handler: Handler): Promise<{ url: string; sockets: Socket[]; seen: string[]; close(): Promise<void> }> {
  const sockets: Socket[] = [];
  const seen: string[] = [];
  const server: Server = createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      seen.push(`${req.method} ${req.url}`);
      handler(req, body, res);
    });
  });
  server.on('connection', (s: Socket) => sockets.push(s));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    sockets,
    seen,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

const json = (res: ServerResponse, status: number, body: unknown) => {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
};

/** Asserts that nothing reachable from the error names the token. */
function expectNoToken(err: unknown): void {
  expect(err).toBeInstanceOf(Error);
  const e = err as Error;
  expect(e.message).not.toContain(TOKEN);
  expect(String(e.stack)).not.toContain(TOKEN);
  expect(JSON.stringify(e)).not.toContain(TOKEN);
}

describe('http-transport (node-vault request-promise transport)', () => {
  let server: Awaited<ReturnType<typeof startServer>>;
  let transport: HttpTransport;
  let rp: RequestFn;
  let handler: Handler;

  beforeEach(async () => {
    handler = (_req, _body, res) => json(res, 200, {});
    server = await startServer((req, body, res) => handler(req, body, res));
    transport = createHttpTransport({ timeoutMs: 2_000 });
    // What node-vault passes to defaults().
    rp = transport.defaults({ json: true, resolveWithFullResponse: true, simple: false, strictSSL: true });
  });
  afterEach(async () => {
    transport.close();
    await server.close();
  });

  it('round-trips JSON: body, method, headers, path', async () => {
    handler = (req, body, res) =>
      json(res, 200, { method: req.method, got: JSON.parse(body), token: req.headers['x-vault-token'], type: req.headers['content-type'] });
    const res = await rp({ method: 'POST', uri: `${server.url}/v1/sys/policies/acl/a?x=1`, headers: { 'X-Vault-Token': TOKEN }, json: { policy: 'p', n: 1 } });
    expect(res).toEqual({
      statusCode: 200,
      body: { method: 'POST', got: { policy: 'p', n: 1 }, token: TOKEN, type: 'application/json' },
      request: { path: '/v1/sys/policies/acl/a' },
    });
  });

  it('sends no body for json: true and keeps a caller content type', async () => {
    handler = (req, body, res) => json(res, 200, { body, length: req.headers['content-length'] ?? null, type: req.headers['content-type'] ?? null });
    expect((await rp({ method: 'GET', uri: `${server.url}/v1/x`, json: true })).body).toEqual({ body: '', length: null, type: null });
    const patched = await rp({ method: 'PATCH', uri: `${server.url}/v1/x`, headers: { 'Content-Type': 'application/merge-patch+json' }, json: {} });
    expect(patched.body).toEqual({ body: '{}', length: '2', type: 'application/merge-patch+json' });
  });

  it('a 204 resolves with an empty string body', async () => {
    handler = (_req, _body, res) => res.writeHead(204).end();
    expect(await rp({ method: 'DELETE', uri: `${server.url}/v1/sys/policies/acl/a`, json: true })).toMatchObject({ statusCode: 204, body: '' });
  });

  it('a body that is not JSON resolves as its text; an error status resolves too (node-vault judges it)', async () => {
    handler = (_req, _body, res) => res.writeHead(502, { 'content-type': 'text/html' }).end('<html>bad gateway</html>');
    expect(await rp({ method: 'GET', uri: `${server.url}/v1/x`, json: true })).toMatchObject({ statusCode: 502, body: '<html>bad gateway</html>' });
  });

  it('does not follow a redirect', async () => {
    handler = (req, _body, res) => {
      if (req.url === '/v1/elsewhere') return json(res, 200, { followed: true });
      res.writeHead(307, { location: `${server.url}/v1/elsewhere` }).end();
    };
    expect(await rp({ method: 'POST', uri: `${server.url}/v1/x`, json: { a: 1 } })).toMatchObject({ statusCode: 307 });
    const client = createVaultClient({ endpoint: server.url, token: TOKEN });
    const err = await client.writePolicy('jit-a', 'path "x" {}').catch((e: unknown) => e);
    client.stop();
    expect(err).toBeInstanceOf(VaultError);
    expect(err).toMatchObject({ status: 307 });
    expectNoToken(err);
    expect(server.seen.filter((s) => s.includes('elsewhere'))).toEqual([]);
  });

  it('reuses keep-alive sockets for sequential calls; stop() closes them', async () => {
    handler = (_req, _body, res) => json(res, 200, { data: { keys: ['jit-a'] } });
    const client = createVaultClient({ endpoint: server.url, token: TOKEN });
    for (let i = 0; i < 8; i++) expect(await client.listPolicies()).toEqual(['jit-a']);
    expect(server.seen).toHaveLength(8);
    // undici gives the call that follows at once to a second connection (the first is still being released),
    // then alternates between the two: never a connection per call.
    expect(server.sockets.length).toBeGreaterThanOrEqual(1);
    expect(server.sockets.length).toBeLessThanOrEqual(2);
    const closed = server.sockets.map((s) => new Promise<void>((resolve) => s.once('close', () => resolve())));
    client.stop();
    await Promise.all(closed);
  });

  it('a response larger than the cap fails the request', async () => {
    const small = createHttpTransport({ maxResponseBytes: 1024 });
    try {
      handler = (_req, _body, res) => json(res, 200, { data: 'x'.repeat(4096) });
      const err = await small.defaults({ json: true })({ method: 'GET', uri: `${server.url}/v1/x`, headers: { 'X-Vault-Token': TOKEN } }).catch((e: unknown) => e);
      expect(err).toMatchObject({ code: 'ERR_VAULT_RESPONSE_TOO_LARGE' });
      expectNoToken(err);
    } finally {
      small.close();
    }
  });

  it('a server that never answers: the request is destroyed at the deadline, unreachable through the adapter', async () => {
    handler = () => {}; // never answers
    const err = await rp({ method: 'GET', uri: `${server.url}/v1/x`, headers: { 'X-Vault-Token': TOKEN }, json: true, timeout: 100 }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'ETIMEDOUT' });
    expectNoToken(err);

    const client = createVaultClient({ endpoint: server.url, token: TOKEN, timeoutMs: 150 });
    const started = Date.now();
    const viaAdapter = await client.createOrphanToken({ policies: ['p'], ttlSeconds: 60, meta: {}, displayName: 'x' }).catch((e: unknown) => e);
    client.stop();
    expect(Date.now() - started).toBeLessThan(2_000);
    expect(viaAdapter).toBeInstanceOf(VaultError);
    expect(viaAdapter).toMatchObject({ kind: 'unreachable', status: undefined });
    expect((viaAdapter as Error).message).toContain('ETIMEDOUT');
    expectNoToken(viaAdapter);
  });

  it('a request still waiting for a connection at its deadline times out too, and the connection serves again after', async () => {
    const one = createHttpTransport({ maxSockets: 1 });
    try {
      const send = one.defaults({ json: true });
      handler = () => {}; // the first request holds the only connection
      const call = () => send({ method: 'GET', uri: `${server.url}/v1/x`, headers: { 'X-Vault-Token': TOKEN }, timeout: 150 }).catch((e: unknown) => e);
      const [first, queued] = await Promise.all([call(), call()]);
      expect(first).toMatchObject({ code: 'ETIMEDOUT' });
      expect(queued).toMatchObject({ code: 'ETIMEDOUT' });
      expect(server.seen).toHaveLength(1); // the queued one was never sent
      handler = (_req, _body, res) => json(res, 200, { ok: true });
      expect(await send({ method: 'GET', uri: `${server.url}/v1/y`, headers: { 'X-Vault-Token': TOKEN } })).toMatchObject({ statusCode: 200, body: { ok: true } });
    } finally {
      one.close();
    }
  });

  it('connection refused keeps its code and is unreachable through the adapter', async () => {
    const url = server.url;
    await server.close();
    const err = await rp({ method: 'GET', uri: `${url}/v1/x`, headers: { 'X-Vault-Token': TOKEN }, json: true }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'ECONNREFUSED' });
    expectNoToken(err);

    const client = createVaultClient({ endpoint: url, token: TOKEN });
    for (const call of [() => client.health(), () => client.writePolicy('jit-a', 'x'), () => client.revokeAccessor('acc')]) {
      const viaAdapter = await call().catch((e: unknown) => e);
      expect(viaAdapter).toMatchObject({ kind: 'unreachable' });
      expect((viaAdapter as Error).message).toContain('ECONNREFUSED');
      expectNoToken(viaAdapter);
    }
    client.stop();
  });

  it('a connection closed mid-response rejects (no half body resolves) and is unreachable through the adapter', async () => {
    handler = (_req, _body, res) => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': '100' });
      res.write('{"data":');
      setTimeout(() => res.socket?.destroy(), 20);
    };
    const err = await rp({ method: 'GET', uri: `${server.url}/v1/x`, headers: { 'X-Vault-Token': TOKEN }, json: true }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'UND_ERR_SOCKET' });
    expectNoToken(err);

    const client = createVaultClient({ endpoint: server.url, token: TOKEN });
    const viaAdapter = await client.lookupAccessor('acc').catch((e: unknown) => e);
    client.stop();
    expect(viaAdapter).toMatchObject({ kind: 'unreachable', status: undefined });
    expectNoToken(viaAdapter);
  });

  it('a header value with a line break is refused before anything is sent, and the error does not carry it', async () => {
    const bad = `${TOKEN}\r\nX-Injected: 1`;
    const err = await rp({ method: 'GET', uri: `${server.url}/v1/x`, headers: { 'X-Vault-Token': bad }, json: true }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    expect(err).toMatchObject({ code: expect.stringMatching(/^UND_ERR_/) });
    expectNoToken(err);
    expect(server.seen).toEqual([]);
  });

  it('Vault errors through the adapter carry no token even when Vault echoes one', async () => {
    handler = (_req, _body, res) => json(res, 400, { errors: [`bad token ${TOKEN}`] });
    const client = createVaultClient({ endpoint: server.url, token: TOKEN });
    const err = await client.lookupAccessor('acc').catch((e: unknown) => e);
    client.stop();
    expect(err).toMatchObject({ kind: 'bad_request', status: 400 });
    expectNoToken(err);
  });
});
