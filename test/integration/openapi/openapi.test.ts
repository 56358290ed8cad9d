import { afterAll, beforeAll, describe, expect, expectTypeOf, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { decideRequest } from '../../../src/broker/decide.ts';
import { ERROR_CODES, problemType } from '../../../src/wire/error-codes.ts';
import * as schemas from '../../../src/wire/schemas.ts';
import { createServedApp } from '../../../src/served-app.ts';
import { REQUEST_EXAMPLES } from '../../../src/http/routes/agent-routes.ts';
import type { GatePushCredential as MintedGateCredential, VaultTokenCredential as MintedVaultCredential } from '../../../src/broker/credential-issue.ts';
import type { GateVerdict } from '../../../src/broker/gate-jwt.ts';
import type { RequestStatus as StoredStatus } from '../../../src/broker/rows.ts';
import type { Jwks as KeyRingJwks } from '../../../src/keys/key-ring.ts';
import { startHarness, type Harness } from '../../helpers/broker-harness.ts';
import { codeBlocks, curlRequest, shellSnippets } from '../cli/doc-snippets.ts';
import { allRefs, resolveRef, validateAgainst } from './json-schema.ts';

type Json = Record<string, any>;
const REPO = join(import.meta.dirname, '..', '..', '..');
const METHODS = ['get', 'post', 'put', 'patch', 'delete', 'head', 'options'];

let h: Harness;
let doc: Json;
let token: string;

beforeAll(async () => {
  h = await startHarness();
  token = await h.addAgent('moltbot');
  const res = await fetch(`${h.broker.url}/openapi.json`);
  doc = (await res.json()) as Json;
});
afterAll(() => h?.close());

/** `METHOD /path/{param}` for every operation in the document. */
function documentedOperations(d: Json): string[] {
  return Object.entries(d.paths as Json).flatMap(([path, item]) => METHODS.filter((m) => m in item).map((m) => `${m.toUpperCase()} ${path}`));
}

/** `METHOD /path/{param}` for every handler the Hono app registers (middleware excluded), but the console's: HTML for people, not the API. */
function registeredRoutes(): string[] {
  const app = createServedApp(h.broker.deps, h.broker.streams);
  const routes = app.routes.filter((r) => r.method !== 'ALL' && !r.path.startsWith('/console')).map((r) => `${r.method} ${r.path.replace(/:(\w+)/g, '{$1}')}`);
  return [...new Set(routes)].sort();
}

/** The zod schema a component of the document was generated from (its `.meta({id})` in src/wire/schemas.ts). */
function zodComponent(name: string): z.ZodType {
  const found = Object.values(schemas as Record<string, unknown>).find((s): s is z.ZodType => s instanceof z.ZodType && s.meta()?.id === name);
  if (!found) throw new Error(`no wire schema has the id ${name}`);
  return found;
}

/** The operation a concrete request hits, matching `{param}` segments. */
function operationFor(method: string, url: string): { path: string; op: Json } | undefined {
  const { pathname } = new URL(url, 'http://x');
  for (const [path, item] of Object.entries(doc.paths as Json)) {
    const re = new RegExp(`^${path.replace(/[.]/g, '\\.').replace(/\{\w+\}/g, '[^/]+')}$`);
    if (re.test(pathname) && item[method.toLowerCase()]) return { path, op: item[method.toLowerCase()] };
  }
  return undefined;
}

describe('GET /openapi.json', () => {
  it('serves the OpenAPI 3.1 document, with JIT_PUBLIC_URL as the server', async () => {
    const res = await fetch(`${h.broker.url}/openapi.json`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    expect(doc.openapi).toBe('3.1.0');
    expect(doc.servers).toEqual([{ url: h.broker.deps.config.publicUrl }]);
    expect(doc.info.version).toBe(JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')).version);
  });

  it('documents every route the Hono app registers, and only those', () => {
    const registered = registeredRoutes();
    const documented = documentedOperations(doc);
    expect(registered.length).toBeGreaterThanOrEqual(9);
    for (const route of registered) expect(documented, `${route} is registered in the app but missing from /openapi.json (declare it with route() and createRoute, src/http/contract.ts)`).toContain(route);
    for (const op of documented) expect(registered, `${op} is documented but no route serves it`).toContain(op);
  });

  it('covers the endpoints the SPEC lists', () => {
    expect(documentedOperations(doc).sort()).toEqual(
      [
        'POST /jit/request',
        'GET /jit/requests/{id}',
        'GET /jit/requests/{id}/events',
        'POST /jit/requests/{id}/claim',
        'POST /jit/requests/{id}/revoke',
        'GET /healthz',
        'GET /.well-known/jwks.json',
        'POST /gate/verify',
        'GET /metrics',
        'POST /telegram/webhook',
        'GET /openapi.json',
      ].sort(),
    );
  });

  it('resolves every $ref and gives every operation an id, a summary and responses', () => {
    for (const r of allRefs(doc)) expect(() => resolveRef(doc, r), r).not.toThrow();
    const ids = new Set<string>();
    for (const item of Object.values(doc.paths as Json)) {
      for (const m of METHODS.filter((x) => x in item)) {
        const op = item[m];
        expect(op.operationId).toBeTruthy();
        expect(ids.has(op.operationId), op.operationId).toBe(false);
        ids.add(op.operationId);
        expect(op.summary).toBeTruthy();
        expect(Object.keys(op.responses).length).toBeGreaterThan(0);
        for (const s of op.security ?? []) for (const scheme of Object.keys(s)) expect(doc.components.securitySchemes).toHaveProperty(scheme);
      }
    }
  });

  it('secures the agent endpoints with the bearer scheme and nothing else', () => {
    expect(doc.components.securitySchemes.agentBearer).toMatchObject({ type: 'http', scheme: 'bearer' });
    for (const op of documentedOperations(doc)) {
      const [method, path] = op.split(' ') as [string, string];
      const security = doc.paths[path][method.toLowerCase()].security;
      if (path.startsWith('/jit/')) expect(security, op).toEqual([{ agentBearer: [] }]);
      else if (path === '/telegram/webhook') expect(security, op).toEqual([{ telegramSecretToken: [] }]);
      else expect(security, op).toEqual([]);
    }
  });

  it('lists every code of the ERROR_CODES registry as a problem type, with status, title and type', () => {
    const problem = doc.components.schemas.Problem;
    const codes = problem.properties.code.oneOf as { const: string; title: string; description: string }[];
    expect(codes.map((c) => c.const).sort()).toEqual(Object.keys(ERROR_CODES).sort());
    for (const c of codes) {
      const entry = ERROR_CODES[c.const as keyof typeof ERROR_CODES];
      expect(c.title).toBe(entry.title);
      expect(c.description).toContain(`HTTP ${entry.status}`);
      expect(problem.properties.type.enum).toContain(problemType(c.const as keyof typeof ERROR_CODES));
    }
    // Every documented problem response is application/problem+json and its examples are valid problems of that status.
    for (const item of Object.values(doc.paths as Json)) {
      for (const m of METHODS.filter((x) => x in item)) {
        for (const [status, response] of Object.entries(item[m].responses as Json)) {
          const problemContent = response.content?.['application/problem+json'];
          // /healthz answers 503 with its usual JSON body, not a problem.
          if (Number(status) < 400 || item[m].operationId === 'health') continue;
          expect(problemContent, `${m} ${status}`).toBeDefined();
          for (const [code, example] of Object.entries(problemContent.examples as Json)) {
            expect(example.value.status).toBe(Number(status));
            expect(example.value.code).toBe(code);
            expect(validateAgainst(doc, problemContent.schema, example.value)).toEqual([]);
            expect(schemas.Problem.safeParse(example.value).success).toBe(true);
          }
        }
      }
    }
  });

  it('generates the bodies from the zod schemas the routes validate with', () => {
    // The routes declare these very objects (from src/wire/schemas.ts) as their bodies, and the document is generated from the declarations.
    const declaredBody = (path: string) => {
      const found = createServedApp(h.broker.deps, h.broker.streams).openAPIRegistry.definitions.find((d) => d.type === 'route' && d.route.path === path);
      return found?.type === 'route' ? (found.route.request?.body?.content['application/json'] as { schema?: unknown } | undefined)?.schema : undefined;
    };
    expect(declaredBody('/jit/request')).toBe(schemas.CredentialRequestBody);
    expect(declaredBody('/gate/verify')).toBe(schemas.GateVerifyBody);
    expect(zodComponent('CredentialRequestBody')).toBe(schemas.CredentialRequestBody);
    expect(doc.paths['/jit/request'].post.requestBody.content['application/json'].schema).toEqual({ $ref: '#/components/schemas/CredentialRequestBody' });
    expect(doc.paths['/gate/verify'].post.requestBody.content['application/json'].schema).toEqual({ $ref: '#/components/schemas/GateVerifyBody' });
    const bodySchema = doc.components.schemas.VaultRequestBody;
    expect(bodySchema.additionalProperties).toBe(false);
    expect(bodySchema.required).toEqual(['resource', 'tier', 'reason', 'vault_paths']);
    // ttl is documented as written (seconds or "15m"), not as the parsed number.
    expect(bodySchema.properties.ttl.type).toEqual(['number', 'string']);
    expect(bodySchema.properties.vault_paths.items.properties.capabilities.items.enum).toEqual(expect.arrayContaining(['read', 'update', 'sudo']));
  });

  it('documents the decision events the broker sends as OpenAPI webhooks, from the wire schemas', () => {
    expect(doc.webhooks.decisionEvent.post.requestBody.content['application/json'].schema).toEqual({ $ref: '#/components/schemas/DecisionEvent' });
    expect(doc.webhooks.openClawAgent.post.requestBody.content['application/json'].schema).toEqual({ $ref: '#/components/schemas/OpenClawAgentBody' });
    expect(doc.components.schemas.DecisionEvent.properties.type.enum).toEqual(['jit.request.approved', 'jit.request.denied', 'jit.request.timed_out', 'jit.request.revoked', 'jit.request.expired']);
  });

  it('response schemas have the types the broker builds them with (checked by tsc in npm test)', () => {
    expectTypeOf<schemas.VaultTokenCredential>().toEqualTypeOf<MintedVaultCredential>();
    expectTypeOf<schemas.GatePushCredential>().toEqualTypeOf<MintedGateCredential>();
    expectTypeOf<schemas.GateVerifyResponse>().toEqualTypeOf<GateVerdict>();
    expectTypeOf<schemas.Jwks>().toEqualTypeOf<KeyRingJwks>();
    expectTypeOf<schemas.RequestStatus>().toEqualTypeOf<StoredStatus>();
  });

  it.each(Object.entries(REQUEST_EXAMPLES))('the documented request example %s is valid for the route and the document', (_name, example) => {
    expect(schemas.CredentialRequestBody.safeParse(example.value).success).toBe(true);
    expect(validateAgainst(doc, { $ref: '#/components/schemas/CredentialRequestBody' }, example.value)).toEqual([]);
  });

  it('rejects in the document what the route rejects (unknown fields, bad tier, missing paths)', () => {
    const ok = REQUEST_EXAMPLES['vault-tier1'].value;
    for (const bad of [{ ...ok, extra: 1 }, { ...ok, tier: 4 }, { ...ok, vault_paths: [] }, { ...ok, resource: 'ssh' }, { ...ok, vault_paths: [{ path: 'a', capabilities: ['fly'] }] }]) {
      expect(schemas.CredentialRequestBody.safeParse(bad).success, JSON.stringify(bad)).toBe(false);
      expect(validateAgainst(doc, { $ref: '#/components/schemas/CredentialRequestBody' }, bad).length, JSON.stringify(bad)).toBeGreaterThan(0);
    }
  });
});

describe('request limits in the document (SPEC §11)', () => {
  const ok = REQUEST_EXAMPLES['vault-tier1'].value;
  const gate = REQUEST_EXAMPLES.gate.value;
  const many = (n: number) => Array.from({ length: n }, (_, i) => ({ path: `homelab/data/docker/s${i}`, capabilities: ['read'] }));

  it('documents at most 32 paths and 32 refs, and the printable-ASCII alphabet of session keys and refs', () => {
    const vault = doc.components.schemas.VaultRequestBody.properties;
    const gateProps = doc.components.schemas.GateRequestBody.properties;
    expect(vault.vault_paths.maxItems).toBe(schemas.REQUEST_LIMITS.items);
    expect(gateProps.refs.maxItems).toBe(schemas.REQUEST_LIMITS.items);
    expect(vault.vault_paths.description).toContain(`${schemas.REQUEST_LIMITS.itemsCharacters} characters together`);
    expect(vault.session_key.pattern).toBe('^[\\x21-\\x7e]+$');
    expect(gateProps.refs.items.pattern).toBe('^[\\x21-\\x7e]+$');
  });

  it.each([
    ['33 paths', { ...ok, vault_paths: many(33) }],
    ['33 refs', { ...gate, refs: Array.from({ length: 33 }, (_, i) => `refs/heads/agent/x${i}`) }],
    ['a session key with a space', { ...ok, session_key: 'hook:jit:moltbot x' }],
    ['a session key with a newline', { ...ok, session_key: 'hook:jit:moltbot\nx' }],
    ['a session key with a bidi override', { ...ok, session_key: 'hook:jit:\u202emoltbot' }],
    ['a ref with a Cyrillic letter', { ...gate, refs: ['refs/heads/agent/fіx'] }],
  ])('the route and the document both refuse %s', (_what, bad) => {
    expect(schemas.CredentialRequestBody.safeParse(bad).success).toBe(false);
    expect(validateAgainst(doc, { $ref: '#/components/schemas/CredentialRequestBody' }, bad).length).toBeGreaterThan(0);
  });

  it('the route and the document both accept 32 paths and a printable session key', () => {
    const good = { ...ok, vault_paths: many(32), session_key: 'hook:jit:moltbot-1' };
    expect(schemas.CredentialRequestBody.safeParse(good).success).toBe(true);
    expect(validateAgainst(doc, { $ref: '#/components/schemas/CredentialRequestBody' }, good)).toEqual([]);
  });
});

describe('docs/api.md', () => {
  const md = readFileSync(join(REPO, 'docs', 'api.md'), 'utf8');
  const curls = codeBlocks(md, 'sh')
    .flatMap((b) => shellSnippets(b.code, b.line))
    .filter((s) => s.command.startsWith('curl '))
    .map((s) => ({ ...s, request: curlRequest(s.command) }));

  it('points at /openapi.json and shows the problem+json format', () => {
    expect(md).toContain('/openapi.json');
    expect(md).toContain('application/problem+json');
    for (const code of Object.keys(ERROR_CODES)) expect(md, `docs/api.md should list ${code}`).toContain(code);
  });

  it('has a curl example for every documented endpoint', () => {
    const covered = new Set(curls.map((c) => operationFor(c.request.method, c.request.url)).filter((o) => o).map((o) => o!.op.operationId));
    const all = documentedOperations(doc).map((op) => {
      const [method, path] = op.split(' ') as [string, string];
      return doc.paths[path][method.toLowerCase()].operationId as string;
    });
    for (const id of all) expect(covered, `docs/api.md has no curl example for ${id}`).toContain(id);
  });

  it('every curl example calls a documented operation the way the document says', () => {
    expect(curls.length).toBeGreaterThanOrEqual(10);
    for (const c of curls) {
      const where = `docs/api.md line ${c.line}: ${c.command}`;
      const found = operationFor(c.request.method, c.request.url);
      expect(found, `${where}\nis not a documented operation`).toBeDefined();
      const { op } = found!;
      const bearer = (op.security as Json[]).some((s) => 'agentBearer' in s);
      // Examples of 401 leave the token out on purpose; they say so with a `# → 401` line.
      if (bearer && !c.expect.some((e) => e.includes('401'))) expect(c.request.headers.authorization, where).toMatch(/^Bearer /);
      if (!op.requestBody) {
        expect(c.request.body, `${where}\nsends a body to an operation that takes none`).toBeUndefined();
        continue;
      }
      if (c.request.body === undefined) continue;
      expect(c.request.headers['content-type'], where).toBe('application/json');
      const parsed = JSON.parse(c.request.body);
      // Examples meant to fail show the error they get.
      if (c.expect.some((e) => /\b4\d\d\b/.test(e))) continue;
      const schemaRef = op.requestBody.content['application/json'].schema.$ref as string;
      const result = zodComponent(schemaRef.split('/').at(-1)!).safeParse(parsed);
      expect(result.success, `${where}\n${result.error ? z.prettifyError(result.error) : ''}`).toBe(true);
      expect(validateAgainst(doc, { $ref: schemaRef }, parsed), where).toEqual([]);
    }
  });
});

describe('real answers match the document', () => {
  const issueVault = (tier = 1, key?: string) =>
    h.call('POST', '/jit/request', {
      token,
      headers: key ? { 'idempotency-key': key } : {},
      body: { resource: 'vault', tier, reason: 'openapi conformance', vault_paths: [{ path: 'homelab/data/docker/registry', capabilities: ['read'] }] },
    });

  /** Checks one answer: documented status for this operation, documented media type, body valid against the document. */
  function conforms(method: string, path: string, res: { status: number; headers: Headers; body: unknown }, zodSchema?: z.ZodType) {
    const found = operationFor(method, `http://x${path}`);
    expect(found, `${method} ${path}`).toBeDefined();
    const response = found!.op.responses[String(res.status)];
    expect(response, `${method} ${found!.path} answered ${res.status}, which the document does not list`).toBeDefined();
    const type = (res.headers.get('content-type') ?? '').split(';')[0]!.trim();
    if (!response.content) return;
    const media = Object.keys(response.content).find((m) => m.split(';')[0] === type);
    expect(media, `${method} ${found!.path} ${res.status}: content-type ${type} is not documented (${Object.keys(response.content)})`).toBeDefined();
    const schema = response.content[media!].schema;
    expect(validateAgainst(doc, schema, res.body), `${method} ${found!.path} ${res.status}: ${JSON.stringify(res.body)}`).toEqual([]);
    if (type === 'application/problem+json') {
      const codes = schema.allOf[1].properties.code.enum as string[];
      expect(codes, `${method} ${found!.path}: answered ${(res.body as Json).code}, not documented for ${res.status}`).toContain((res.body as Json).code);
    }
    if (zodSchema) {
      const parsed = zodSchema.safeParse(res.body);
      expect(parsed.success, parsed.error ? z.prettifyError(parsed.error) : '').toBe(true);
    }
    expect(res.headers.get('x-request-id')).toMatch(/^http_/);
  }

  it('agent endpoints: issue, view, revoke, replay, pending, approve, claim', async () => {
    const issued = await issueVault(1, 'openapi-key-1');
    expect(issued.status).toBe(201);
    conforms('POST', '/jit/request', issued, schemas.IssuedResponse);
    const id = issued.body.id as string;
    conforms('GET', `/jit/requests/${id}`, await h.call('GET', `/jit/requests/${id}`, { token }), schemas.RequestView);
    const replay = await issueVault(1, 'openapi-key-1');
    expect(replay.status).toBe(200);
    conforms('POST', '/jit/request', replay, schemas.RequestView);
    conforms('POST', `/jit/requests/${id}/revoke`, await h.call('POST', `/jit/requests/${id}/revoke`, { token }), schemas.RequestView);

    const pending = await h.call('POST', '/jit/request', {
      token,
      body: { resource: 'vault', tier: 2, reason: 'write', vault_paths: [{ path: 'homelab/data/apps/web', capabilities: ['read', 'update'] }], ttl: '15m' },
    });
    expect(pending.status).toBe(202);
    conforms('POST', '/jit/request', pending, schemas.PendingResponse);
    conforms('POST', `/jit/requests/${pending.body.id}/claim`, await h.call('POST', `/jit/requests/${pending.body.id}/claim`, { token }));
    await decideRequest(h.broker.deps, pending.body.id, { approver: 'local-cli', decision: 'approve' });
    conforms('GET', `/jit/requests/${pending.body.id}`, await h.call('GET', `/jit/requests/${pending.body.id}`, { token }), schemas.RequestView);
    const claimed = await h.call('POST', `/jit/requests/${pending.body.id}/claim`, { token });
    expect(claimed.status).toBe(201);
    conforms('POST', `/jit/requests/${pending.body.id}/claim`, claimed, schemas.IssuedResponse);
    const again = await h.call('POST', `/jit/requests/${pending.body.id}/claim`, { token });
    expect(again.status).toBe(409);
    conforms('POST', `/jit/requests/${pending.body.id}/claim`, again, schemas.Problem);
  });

  it('gate: issue and verify, valid and invalid', async () => {
    const issued = await h.call('POST', '/jit/request', { token, body: { resource: 'gate', tier: 1, reason: 'push', repo: 'homelab/app', refs: ['refs/heads/agent/x'] } });
    expect(issued.status).toBe(201);
    conforms('POST', '/jit/request', issued, schemas.IssuedResponse);
    const credential = issued.body.credential.credential as string;
    const valid = await h.call('POST', '/gate/verify', { body: { credential, repo: 'homelab/app', ref: 'refs/heads/agent/x' } });
    expect(valid.body.valid).toBe(true);
    conforms('POST', '/gate/verify', valid, schemas.GateVerifyResponse);
    const invalid = await h.call('POST', '/gate/verify', { body: { credential, repo: 'homelab/app', ref: 'refs/heads/main' } });
    expect(invalid.body.valid).toBe(false);
    conforms('POST', '/gate/verify', invalid, schemas.GateVerifyResponse);
  });

  it('public endpoints: healthz, jwks, telegram webhook without Telegram', async () => {
    conforms('GET', '/healthz', await h.call('GET', '/healthz'), schemas.HealthResponse);
    conforms('GET', '/.well-known/jwks.json', await h.call('GET', '/.well-known/jwks.json'), schemas.Jwks);
    conforms('POST', '/telegram/webhook', await h.call('POST', '/telegram/webhook', { body: { update_id: 1 } }), schemas.Problem);
    const metrics = await h.call('GET', '/metrics');
    conforms('GET', '/metrics', metrics);
    expect(metrics.body).toMatch(/^# HELP /m);
  });

  it.each([
    ['no token', 'POST', '/jit/request', {}],
    ['bad body', 'POST', '/jit/request', { token: 'T', body: { resource: 'vault', tier: 9 } }],
    ['unknown field', 'POST', '/jit/request', { token: 'T', body: { resource: 'vault', tier: 1, reason: 'r', vault_paths: [{ path: 'a/b', capabilities: ['read'] }], extra: 1 } }],
    ['not JSON', 'POST', '/jit/request', { token: 'T', raw: 'nope', headers: { 'content-type': 'text/plain' } }],
    ['denied pair', 'POST', '/jit/request', { token: 'T', body: { resource: 'vault', tier: 1, reason: 'r', vault_paths: [{ path: 'sys/mounts', capabilities: ['read'] }] } }],
    ['uncovered pair', 'POST', '/jit/request', { token: 'T', body: { resource: 'vault', tier: 1, reason: 'r', vault_paths: [{ path: 'other/x', capabilities: ['read'] }] } }],
    ['sudo', 'POST', '/jit/request', { token: 'T', body: { resource: 'vault', tier: 1, reason: 'r', vault_paths: [{ path: 'homelab/data/docker/x', capabilities: ['sudo'] }] } }],
    ['bad path', 'POST', '/jit/request', { token: 'T', body: { resource: 'vault', tier: 1, reason: 'r', vault_paths: [{ path: 'homelab/data/../x', capabilities: ['read'] }] } }],
    ['foreign session', 'POST', '/jit/request', { token: 'T', body: { resource: 'vault', tier: 1, reason: 'r', session_key: 'hook:jit:other', vault_paths: [{ path: 'homelab/data/docker/x', capabilities: ['read'] }] } }],
    ['unknown request', 'GET', '/jit/requests/req_00000000000000000000000000', { token: 'T' }],
    ['too large', 'POST', '/gate/verify', { raw: JSON.stringify({ credential: 'x'.repeat(70_000), repo: 'r', ref: 'f' }) }],
    ['gate verify bad body', 'POST', '/gate/verify', { body: { credential: '' } }],
  ] as const)('errors are documented problems: %s', async (_name, method, path, opts) => {
    const o = { ...opts } as Json;
    if (o.token === 'T') o.token = token;
    const res = await h.call(method, path, o);
    expect(res.status).toBeGreaterThanOrEqual(400);
    expect(res.headers.get('content-type')).toBe('application/problem+json');
    conforms(method, path, res, schemas.Problem);
  });
});
