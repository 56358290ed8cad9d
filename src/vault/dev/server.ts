import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { redactTokens } from '../errors.ts';
import type { Operation } from './acl.ts';
import { DurationError, parseDurationSeconds } from './duration.ts';
import { VaultHttpError, badRequest, envelope, permissionDenied, unsupportedOperation } from './envelope.ts';
import type { LogicalResponse } from './envelope.ts';
import { findRoute, noRoute } from './router.ts';
import type { Route, VaultRequest } from './router.ts';
import { approleRoutes } from './routes/approle.ts';
import { kvRoutes } from './routes/kv.ts';
import { sysRoutes } from './routes/sys.ts';
import { tokenRoutes } from './routes/token.ts';
import { wrapResponse, wrappingRoutes } from './routes/wrapping.ts';
import type { DevVaultState } from './state.ts';
import type { TokenEntry } from './token-store.ts';

/** Vault's request body limit (32 MiB). */
export const MAX_BODY_BYTES = 32 * 1024 * 1024;

const ROUTES: Route[] = [...sysRoutes, ...wrappingRoutes, ...tokenRoutes, ...approleRoutes, ...kvRoutes];

class BodyTooLarge extends Error {}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length']);
    if (declared > MAX_BODY_BYTES) {
      req.resume();
      reject(new BodyTooLarge());
      return;
    }
    const chunks: Buffer[] = [];
    let total = 0;
    let tooLarge = false;
    req.on('data', (chunk: Buffer) => {
      total += chunk.length;
      if (total > MAX_BODY_BYTES) tooLarge = true;
      if (!tooLarge) chunks.push(chunk);
    });
    req.on('end', () => (tooLarge ? reject(new BodyTooLarge()) : resolve(Buffer.concat(chunks))));
    req.on('error', () => reject(badRequest('failed to read the request body')));
  });
}

function parseJsonObject(body: Buffer): Record<string, unknown> {
  const text = body.toString('utf8');
  if (text.trim() === '') return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw badRequest(`failed to parse JSON input: ${(e as Error).message}`);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw badRequest('failed to parse JSON input: the request body must be a JSON object');
  }
  return parsed as Record<string, unknown>;
}

/** Go's strconv.ParseBool, as Vault reads `?list=`. */
function parseBool(v: string): boolean {
  if (/^(1|t|T|TRUE|true|True)$/.test(v)) return true;
  if (/^(0|f|F|FALSE|false|False)$/.test(v)) return false;
  throw badRequest(`invalid value for "list": ${JSON.stringify(v)}`);
}

function headerToken(req: IncomingMessage): string | undefined {
  const direct = req.headers['x-vault-token'];
  if (typeof direct === 'string' && direct !== '') return direct;
  const auth = req.headers['authorization'];
  if (typeof auth === 'string') {
    const m = /^Bearer\s+(\S+)$/i.exec(auth);
    if (m) return m[1];
  }
  return undefined;
}

function wrapTtl(req: IncomingMessage): number {
  const raw = req.headers['x-vault-wrap-ttl'];
  if (raw === undefined || raw === '') return 0;
  try {
    const ttl = parseDurationSeconds(Array.isArray(raw) ? raw[0] : raw);
    if (ttl < 0) throw new DurationError('negative TTL');
    return ttl;
  } catch (e) {
    throw badRequest(`error parsing X-Vault-Wrap-TTL header: ${(e as Error).message}`);
  }
}

function send(res: ServerResponse, status: number, body?: unknown, head = false): void {
  const headers: Record<string, string> = { 'Cache-Control': 'no-store', 'X-Jit-Dev-Vault': 'development-only' };
  if (body === undefined || status === 204) {
    res.writeHead(status, headers).end();
    return;
  }
  const text = JSON.stringify(body);
  headers['Content-Type'] = 'application/json';
  headers['Content-Length'] = String(Buffer.byteLength(text));
  res.writeHead(status, headers).end(head ? undefined : text);
}

function requestUrl(req: IncomingMessage): URL | undefined {
  try {
    return new URL(req.url ?? '/', 'http://dev-vault.invalid');
  } catch {
    return undefined;
  }
}

interface Outcome {
  status: number;
  body?: unknown;
  op: Operation | null;
  caller: TokenEntry | undefined;
}

async function handleRequest(req: IncomingMessage, state: DevVaultState): Promise<Outcome> {
  const url = requestUrl(req);
  if (!url) throw badRequest('invalid request URL');
  if (!url.pathname.startsWith('/v1/')) throw new VaultHttpError(404, []);
  let path: string;
  try {
    path = decodeURIComponent(url.pathname.slice('/v1/'.length)).replace(/^\/+/, '');
  } catch {
    throw badRequest('invalid URL path encoding');
  }
  const method = (req.method ?? 'GET').toUpperCase();
  const body = await readBody(req);

  let op: Operation;
  let data: Record<string, unknown>;
  switch (method) {
    case 'GET':
    case 'HEAD': {
      const list = url.searchParams.get('list');
      op = list !== null && list !== '' && parseBool(list) ? 'list' : 'read';
      if (op === 'list' && !path.endsWith('/')) path += '/';
      data = Object.fromEntries([...url.searchParams].filter(([k]) => k !== 'list'));
      break;
    }
    case 'DELETE':
      op = 'delete';
      data = Object.fromEntries(url.searchParams);
      break;
    case 'POST':
    case 'PUT':
      op = 'update';
      data = parseJsonObject(body);
      break;
    case 'PATCH':
      op = 'patch';
      data = parseJsonObject(body);
      break;
    default:
      throw unsupportedOperation();
  }

  if (state.sealed && path !== 'sys/health') throw new VaultHttpError(503, ['Vault is sealed']);

  const found = findRoute(ROUTES, path);
  const vreq: VaultRequest = {
    method,
    op,
    path,
    params: found?.params ?? {},
    data,
    headers: req.headers,
    headerToken: headerToken(req),
    useLimited: false,
    wrapTtl: wrapTtl(req),
  };
  found?.route.preAuth?.(vreq, state);

  let exhausted = false;
  try {
    if (!found?.route.unauthenticated) {
      const token = vreq.headerToken ? state.tokens.get(vreq.headerToken) : undefined;
      if (!token) throw permissionDenied();
      vreq.token = token;
      vreq.useLimited = token.numUses > 0;
      // Every authenticated request spends a use, even one that is denied.
      exhausted = state.tokens.spendUse(token);
      if (op === 'update' && found?.route.exists) vreq.op = found.route.exists(vreq, state) ? 'update' : 'create';
      vreq.acl = state.aclFor(token);
      const check = vreq.acl.check(vreq.op, path);
      if (!check.allowed || (found?.route.sudo && !check.sudo)) {
        return fail(permissionDenied(), vreq);
      }
    }
    if (!found) throw noRoute(path);
    const handler = found.route.handlers[vreq.op] ?? (vreq.op === 'create' ? found.route.handlers.update : undefined);
    if (!handler) throw unsupportedOperation();
    const resp = handler(vreq, state) ?? null;
    return { ...render(resp, vreq, found.route, state), op: vreq.op, caller: vreq.token };
  } catch (e) {
    return fail(e, vreq);
  } finally {
    if (exhausted && vreq.token) state.tokens.revoke(vreq.token);
  }
}

function fail(e: unknown, vreq: VaultRequest): Outcome {
  if (!(e instanceof VaultHttpError)) throw e;
  return { status: e.status, body: e.body ?? { errors: e.errors }, op: vreq.op, caller: vreq.token };
}

function render(
  resp: LogicalResponse | null,
  vreq: VaultRequest,
  route: Route,
  state: DevVaultState,
): { status: number; body?: unknown } {
  if (resp === null) return { status: 204 };
  if (resp.raw) return resp.raw;
  const status = resp.status ?? 200;
  const body = envelope(resp, route.mountType);
  if (status === 200 && vreq.wrapTtl > 0 && (resp.data || resp.auth)) {
    return { status: 200, body: wrapResponse(state, body, vreq.wrapTtl, vreq.path) };
  }
  return { status, body };
}

/**
 * The development Vault's HTTP server. Every failure becomes Vault's error
 * envelope; nothing a client sends can take the server down.
 */
export function createDevVaultServer(state: DevVaultState): Server {
  const server = createServer((req, res) => {
    const started = state.clock.now();
    const method = (req.method ?? 'GET').toUpperCase();
    // Never let a token reach the request log, even one pasted into a URL.
    const path = redactTokens(requestUrl(req)?.pathname ?? '(invalid URL)');
    handleRequest(req, state)
      .catch((e: unknown): Outcome => {
        if (e instanceof BodyTooLarge) {
          res.setHeader('Connection', 'close');
          return { status: 413, body: { errors: ['http: request body too large'] }, op: null, caller: undefined };
        }
        if (e instanceof VaultHttpError) return { status: e.status, body: e.body ?? { errors: e.errors }, op: null, caller: undefined };
        return { status: 500, body: { errors: ['internal error'] }, op: null, caller: undefined };
      })
      .then((out) => {
        state.record({
          at: started,
          method,
          path,
          operation: out.op,
          status: out.status,
          accessor: out.caller?.accessor ?? null,
        });
        if (!res.headersSent) send(res, out.status, out.body, method === 'HEAD');
      })
      .catch(() => {
        if (!res.headersSent) res.writeHead(500).end();
      });
  });
  server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
    if (!socket.writable) {
      socket.destroy();
      return;
    }
    const msg =
      err.code === 'HPE_INVALID_METHOD'
        ? 'unsupported HTTP method (Vault LIST requests must be sent as GET with ?list=true)'
        : 'malformed HTTP request';
    const text = JSON.stringify({ errors: [msg] });
    socket.end(
      `HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(text)}\r\nConnection: close\r\n\r\n${text}`,
    );
  });
  return server;
}
