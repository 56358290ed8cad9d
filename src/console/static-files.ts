import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { Hono } from 'hono';
import type { ConsoleEnv } from './env.ts';

/*
 * The console's static files, read once at start: our console.js,
 * console.css and favicon.svg (beside this module in src/ and in dist/: the build copies
 * every non-TypeScript file), and @simplewebauthn/browser's UMD bundle from
 * node_modules (resolved through the package, so it works from dist/ too).
 */

function webauthnBundle(): Buffer {
  const entry = createRequire(import.meta.url).resolve('@simplewebauthn/browser'); // …/@simplewebauthn/browser/script/index.js
  return readFileSync(join(dirname(dirname(entry)), 'dist', 'bundle', 'index.umd.min.js'));
}

const own = (name: string) => readFileSync(new URL(`./static/${name}`, import.meta.url));

/** The console's static files by name; throws when one cannot be read (a broken install). */
export type StaticFiles = Map<string, { body: Buffer; type: string }>;

export function loadStaticFiles(): StaticFiles {
  return new Map([
    ['console.js', { body: own('console.js'), type: 'text/javascript; charset=utf-8' }],
    ['console.css', { body: own('console.css'), type: 'text/css; charset=utf-8' }],
    ['webauthn.js', { body: webauthnBundle(), type: 'text/javascript; charset=utf-8' }],
    ['favicon.svg', { body: own('favicon.svg'), type: 'image/svg+xml' }],
  ]);
}

export function staticRoutes(app: Hono<ConsoleEnv>, files: StaticFiles): void {
  app.get('/static/:name', (c) => {
    const file = files.get(c.req.param('name'));
    if (!file) return c.text('no such file', 404);
    return c.body(new Uint8Array(file.body), 200, { 'content-type': file.type, 'cache-control': 'no-cache', 'x-content-type-options': 'nosniff' });
  });
}
