#!/usr/bin/env node
// Entry point of the `jit` CLI. It runs the compiled JavaScript in dist/,
// built by `npm run build` (which `npm ci` runs as `prepare`, and `npm test`
// and `npm run bench` before they start). In a checkout whose src/ changed
// since that build, or was never built, it runs the TypeScript sources
// through tsx instead (a development dependency), so what runs is never
// older than the sources; `npm run build` makes it fast again.
import { distState } from './dist-state.mjs';

const state = distState();
let main = '../dist/cli/main.js';
if (state !== 'fresh') {
  const tsx = await import('tsx/esm/api').catch((err) => {
    if (err?.code === 'ERR_MODULE_NOT_FOUND') return undefined;
    throw err;
  });
  if (tsx) {
    tsx.register();
    main = '../src/cli/main.ts';
  } else if (state === 'missing') {
    process.stderr.write('jit: dist/ is not built and tsx is not installed: run "npm ci" (it builds) or "npm run build"\n');
    process.exit(1);
  } else {
    process.stderr.write('jit: warning: dist/ is older than src/ (run "npm run build"); running dist/\n');
  }
}
const { runCli } = await import(main);
process.exitCode = await runCli(process.argv.slice(2));
