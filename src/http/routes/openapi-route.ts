import { Hono } from 'hono';
import type { BrokerDeps } from '../../broker/deps.ts';
import { MAX_BODY_BYTES } from '../body.ts';
import type { AppEnv } from '../env.ts';
import { createOpenApiDocument } from '../openapi.ts';

/** `GET /openapi.json`: the API description, generated from the routes' zod schemas (src/http/openapi.ts). */
export function openApiRoutes(deps: Pick<BrokerDeps, 'config'>) {
  const app = new Hono<AppEnv>();
  let body: string | undefined;
  app.get('/openapi.json', (c) => {
    // Built on first use, then served as is: it depends only on the code and JIT_PUBLIC_URL.
    body ??= JSON.stringify(createOpenApiDocument({ serverUrl: deps.config.publicUrl, maxBodyBytes: MAX_BODY_BYTES }));
    c.header('Cache-Control', 'public, max-age=300');
    return c.body(body, 200, { 'Content-Type': 'application/json; charset=utf-8' });
  });
  return app;
}
