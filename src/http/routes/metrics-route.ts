import { createRoute } from '@hono/zod-openapi';
import type { Context } from 'hono';
import { matchedRoutes } from 'hono/route';
import { z } from 'zod';
import type { BrokerDeps } from '../../broker/deps.ts';
import { contractRouter, plainResponse, route } from '../contract.ts';

/**
 * `GET /metrics` (Prometheus text format) and the middleware that counts
 * every HTTP request into `jit_http_requests_total` and
 * `jit_http_request_duration_seconds`.
 *
 * Mount it with `app.route('/', metricsRoutes(deps))` before the routes it
 * should measure: its middleware only wraps handlers registered after it.
 */
export function metricsRoutes(deps: Pick<BrokerDeps, 'metrics'>) {
  const app = contractRouter();
  const { metrics } = deps;

  app.use('*', async (c, next) => {
    const started = performance.now();
    try {
      await next();
    } finally {
      metrics.http(c.req.method, routeOf(c), c.res.status, (performance.now() - started) / 1000);
    }
  });

  route(
    app,
    createRoute({
      method: 'get',
      path: '/metrics',
      operationId: 'metrics',
      tags: ['operations'],
      summary: 'Prometheus metrics',
      security: [],
      responses: { 200: plainResponse('Prometheus text exposition format', { 'text/plain; version=0.0.4': { schema: z.string() } }) },
    }),
    async (c) => {
      const text = await metrics.render();
      return c.body(text, 200, { 'content-type': metrics.contentType, 'cache-control': 'no-store' });
    },
  );

  return app;
}

/**
 * The route pattern that answered (`/jit/requests/:id`), so label values
 * stay few whatever paths clients send; `unmatched` for a 404 from no
 * route. Taken from the router's match, so it is right even when a
 * middleware (authentication, body limit) answered before the handler.
 */
function routeOf(c: Context): string {
  const routes = matchedRoutes(c);
  for (let i = routes.length - 1; i >= 0; i--) {
    const r = routes[i]!;
    if (r.method !== 'ALL') return r.path;
  }
  return 'unmatched';
}
