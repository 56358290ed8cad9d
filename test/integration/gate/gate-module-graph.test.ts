import { afterAll, beforeAll, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { distState } from '../../../bin/dist-state.mjs';
import { runJit } from '../../helpers/cli.ts';
import { startHarness, type Harness } from '../../helpers/broker-harness.ts';
import { closedPortUrl } from './closed-port.ts';

/**
 * `jit gate verify` runs on every push (the git gate's pre-receive hook) and
 * must start fast (issue 17, B10: under 300 ms; docs/benchmarks.md "CLI
 * start"). What it costs is mostly what it loads, so this guards the module
 * graph, not the time: a run of the built CLI, as the hook runs it, loads
 * no package at all (no zod, Hono, grammY, node-vault, pino,
 * better-sqlite3, …; zod alone was ≈ 60 ms of CPU a call) and not fetch
 * (undici, compiled on first use, ≈ 20–30 ms and more). The graph is
 * recorded by test/helpers/module-graph.mjs in the spawned process.
 */
const PRELOAD = pathToFileURL(join(import.meta.dirname, '..', '..', 'helpers', 'module-graph.mjs')).href;
const FETCH = 'builtin:NativeModule internal/deps/undici/undici';

let h: Harness;
let dir: string;
let token: string;
let runs = 0;
beforeAll(async () => {
  // What the hook runs is dist/ (bin/jit.mjs runs the sources through tsx only when dist/ is stale).
  expect(distState(), 'dist/ is missing or older than src/: run "npm run build" (npm test does)').toBe('fresh');
  h = await startHarness();
  token = await h.addAgent('moltbot');
  dir = mkdtempSync(join(tmpdir(), 'jit-gate-graph-'));
});
afterAll(async () => {
  await h.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Runs `jit ARGS` and returns its result and every module it loaded (see module-graph.mjs). */
async function runRecorded(args: string[], env: Record<string, string>) {
  const graph = join(dir, `graph-${++runs}.txt`);
  const res = await runJit(args, { ...env, NODE_OPTIONS: `--import=${PRELOAD}`, JIT_TEST_MODULE_GRAPH: graph });
  const loaded = [...new Set(readFileSync(graph, 'utf8').split('\n').filter(Boolean))];
  const packages = [...new Set(loaded.flatMap((url) => /\/node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url)?.[1] ?? []))].sort();
  return { ...res, loaded, packages };
}

async function issue(ref: string) {
  const res = await h.call('POST', '/jit/request', { token, body: { resource: 'gate', tier: 1, reason: 'push', repo: 'homelab/app', refs: [ref] } });
  expect(res.status).toBe(201);
  return res.body.credential.credential as string;
}

const verifyArgs = (jwt: string) => ['gate', 'verify', '--credential', jwt, '--repo', 'homelab/app', '--ref', 'refs/heads/agent/a'];

it('jit gate verify loads no package and not fetch: online, refreshing the JWKS cache, and offline from it', async () => {
  const jwt = await issue('refs/heads/agent/a');
  const cache = join(dir, 'jwks.json');
  const online = { JIT_URL: h.broker.url, JIT_JWKS_CACHE: cache };
  const runs = {
    online: await runRecorded(verifyArgs(jwt), online),
    refreshing: await runRecorded(verifyArgs(jwt), { ...online, JIT_GATE_OFFLINE_WINDOW: '10m' }),
    offline: await runRecorded(verifyArgs(jwt), { ...online, JIT_GATE_OFFLINE_WINDOW: '10m', JIT_URL: await closedPortUrl() }),
    refused: await runRecorded([...verifyArgs(jwt).slice(0, -1), 'refs/heads/main'], online),
  };
  expect(runs.online.stdout).toMatch(/^valid: agent moltbot/);
  expect(runs.offline.stderr).toMatch(/verified offline/);
  expect(runs.refused.stderr).toMatch(/^invalid: /);
  for (const [name, run] of Object.entries(runs)) {
    expect(run.code, `${name}: ${run.stderr}`).toBe(name === 'refused' ? 1 : 0);
    // Not vacuous: the recorder saw the command's own modules.
    expect(run.loaded.some((url) => url.endsWith('/dist/cli/commands/gate.js')), name).toBe(true);
    expect(run.loaded.some((url) => url.endsWith('/dist/broker/gate-jwt.js')), name).toBe(true);
    expect(run.packages, `${name}: packages loaded`).toEqual([]);
    expect(run.loaded, `${name}: fetch (undici) was loaded`).not.toContain(FETCH);
  }
});

it('jit --help loads no package and no command', async () => {
  const help = await runRecorded(['--help'], {});
  expect(help.code).toBe(0);
  expect(help.loaded.some((url) => url.endsWith('/dist/cli/main.js'))).toBe(true);
  expect(help.packages).toEqual([]);
  expect(help.loaded.filter((url) => url.includes('/dist/cli/commands/'))).toEqual([]);
  expect(help.loaded).not.toContain(FETCH);
});
