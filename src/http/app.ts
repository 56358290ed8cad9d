import type { OpenAPIHono, RouteConfig } from '@hono/zod-openapi';
import type { Hono } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import type { BrokerDeps } from '../broker/deps.ts';
import type { RequestStreams } from '../broker/request-stream.ts';
import { BrokerError } from '../broker/errors.ts';
import { pooledRandomBytes } from '../lib/random-pool.ts';
import { declaredBodyLimit, MAX_BODY_BYTES, payloadTooLarge } from './body.ts';
import { contractRouter, route } from './contract.ts';
import type { AppEnv, AppTelegram } from './env.ts';
import { problemResponse } from './problem.ts';
import { StorageBusyError, StorageUnavailableError } from '../storage/errors.ts';
import { agentRoutes } from './routes/agent-routes.ts';
import { metricsRoutes } from './routes/metrics-route.ts';
import { openApiRoutes } from './routes/openapi-route.ts';
import { publicRoutes } from './routes/public-routes.ts';

/**
 * A POST route the composition root mounts (the Telegram webhook): a Fetch
 * API handler, under the body limit, and its contract for GET /openapi.json
 * (createRoute's fields but the method and path; its body is documented, not
 * read: the handler reads it).
 */
export interface MountedRoute {
  path: string;
  handler(request: Request): Response | Promise<Response>;
  contract: Omit<RouteConfig, 'method' | 'path'>;
}

/** The HTTP API. Handlers validate and call broker verbs; none writes SQL. */
export interface AppOptions {
  /** The approval bot, if Telegram is configured: changes kick its sync, /healthz reports it. */
  telegram?: AppTelegram | undefined;
  /** POST routes served as they are (main.ts mounts the Telegram webhook here). */
  routes?: MountedRoute[];
  /** The process's decision stream hub (GET /jit/requests/{id}/events); closed by whoever made it. */
  streams: RequestStreams;
  /**
   * Apps served as they are under a path (main.ts mounts the operator
   * console at /console here): every method, their own middleware, and not
   * in GET /openapi.json (the console is HTML for people, not an API).
   */
  mounts?: { path: string; app: Hono<any> }[];
}

export function createApp(deps: BrokerDeps, opts: AppOptions): OpenAPIHono<AppEnv> {
  const app = contractRouter();

  app.use('*', async (c, next) => {
    const requestId = `http_${pooledRandomBytes(8).toString('hex')}`;
    c.set('requestId', requestId);
    const log = deps.log.child({ http_request_id: requestId });
    c.set('log', log);
    const started = performance.now();
    await next();
    // Straight on the response's headers: c.header() after the handler copies
    // the whole response (a tenth of a request's CPU under @hono/node-server).
    try {
      c.res.headers.set('X-Request-Id', requestId);
    } catch {
      c.header('X-Request-Id', requestId); // immutable headers (a fetched Response)
    }
    const status = c.res.status;
    const line = {
      method: c.req.method,
      path: c.req.path,
      status,
      ms: Math.round((performance.now() - started) * 10) / 10,
      agent: c.get('agent')?.name,
    };
    if (status >= 500) log.error(line, 'request failed');
    else log.info(line, 'request');
  });

  // GET /metrics, and HTTP metrics for everything registered below (413s from the body limit included).
  app.route('/', metricsRoutes(deps));

  app.use('*', declaredBodyLimit);
  // A mounted route gets the Fetch API request itself, so its body is limited here.
  for (const route of opts.routes ?? []) {
    app.use(route.path, bodyLimit({ maxSize: MAX_BODY_BYTES, onError: (c) => problemResponse(c, payloadTooLarge()) }));
  }

  app.route('/', publicRoutes(deps, opts.telegram));
  app.route('/jit', agentRoutes(deps, opts.streams, () => void opts.telegram?.kick()));
  for (const mounted of opts.routes ?? []) {
    // The handler gets the Fetch API request itself (grammY's webhookCallback reads the Telegram update), so the body is not read here.
    route(app, { ...mounted.contract, method: 'post', path: mounted.path }, (c) => mounted.handler(c.req.raw), { readBody: false });
  }
  for (const mount of opts.mounts ?? []) app.route(mount.path, mount.app);
  openApiRoutes(app, deps.config.publicUrl);

  app.notFound((c) => problemResponse(c, new BrokerError('NOT_FOUND', `no route for ${c.req.method} ${c.req.path}`)));
  app.onError((err, c) => {
    if (err instanceof BrokerError) return problemResponse(c, err);
    if (err instanceof StorageBusyError) {
      // Another process held the database longer than busy_timeout: nothing was changed, try again.
      c.get('log')?.warn({ err }, 'database busy');
      return problemResponse(c, new BrokerError('UNAVAILABLE', 'the database is busy (another process holds its write lock); nothing was changed, retry shortly', { retryAfterSeconds: 1 }));
    }
    if (err instanceof StorageUnavailableError) {
      // PostgreSQL unreachable or the connection lost: the broker keeps serving and the next call reconnects.
      c.get('log')?.warn({ err: { name: err.name, code: (err.cause as { code?: unknown } | undefined)?.code } }, 'database unavailable');
      return problemResponse(c, new BrokerError('UNAVAILABLE', 'the database is unavailable; retry shortly (another broker, if there is one, may answer)', { retryAfterSeconds: 5 }));
    }
    c.get('log')?.error({ err }, 'unhandled error');
    return problemResponse(c, new BrokerError('INTERNAL', 'internal error; the operator can find it in the broker log by X-Request-Id'));
  });
  return app;
}
