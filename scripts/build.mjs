// `npm run build`: compiles src/ to dist/ (tsconfig.build.json) and copies
// every other file under src/ (SQL migrations, the checkpoint worker) to the
// same place in dist/, so that dist/ is an image of src/ that `jit` runs
// without a TypeScript loader; then bundles the agent package
// (packages/agent/dist, scripts/build-agent.mjs). `npm ci` runs it as `prepare`; `npm test` and
// `npm run bench` run it first. Incremental: a build with nothing changed
// takes a couple of seconds and rewrites nothing.
//
// The stamp bin/jit.mjs checks (dist/.build-stamp) is removed first and
// written last, so while this runs, or after it failed, a checkout runs the
// sources through tsx rather than a half-written dist/.
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative } from 'node:path';
import { BUILD_STAMP, DIST, ROOT, SRC, distState } from '../bin/dist-state.mjs';
import { buildAgentPackage } from './build-agent.mjs';

const started = new Date();
const TS_BUILD_INFO = join(DIST, '.tsbuildinfo');
const log = (line) => process.stderr.write(`build: ${line}\n`);

let tsc;
try {
  tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
} catch {
  // `npm ci --omit=dev` in a checkout: no compiler. Fine if dist/ is already this source's build.
  if (distState() === 'fresh') {
    log('typescript is not installed; dist/ is already built from these sources');
    process.exit(0);
  }
  log('typescript is not installed (npm ci --omit=dev?): install everything with "npm ci", which builds, then "npm prune --omit=dev"');
  process.exit(1);
}

rmSync(BUILD_STAMP, { force: true });
compile();
const sources = sourceFiles();
const missing = sources.filter((f) => f.endsWith('.ts') && !exists(join(DIST, f.replace(/\.ts$/, '.js'))));
if (missing.length > 0) {
  // Outputs deleted behind the incremental build's back: compile everything again.
  log(`${missing.length} compiled files missing (e.g. dist/${missing[0].replace(/\.ts$/, '.js')}); full rebuild`);
  rmSync(TS_BUILD_INFO, { force: true });
  compile();
}
const copied = syncAssets(sources);
await buildAgentPackage(ROOT, log);
writeFileSync(BUILD_STAMP, `built from src/ at ${started.toISOString()}\n`);
utimesSync(BUILD_STAMP, started, started);
log(`dist/ up to date (${copied} asset${copied === 1 ? '' : 's'} copied, ${Date.now() - started.getTime()} ms)`);

function compile() {
  const r = spawnSync(process.execPath, [tsc, '-p', join(ROOT, 'tsconfig.build.json')], { stdio: 'inherit' });
  if (r.status !== 0) {
    log(`tsc failed (exit ${r.status ?? r.signal}); dist/ is not marked built, so jit runs the sources through tsx`);
    process.exit(r.status || 1);
  }
}

/** Every file under src/, relative to it. */
function sourceFiles(dir = SRC) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? sourceFiles(join(dir, e.name)) : [relative(SRC, join(dir, e.name))]));
}

function exists(path) {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

/**
 * Copies each non-TypeScript file of src/ (`files`, relative to it) that differs from its dist/ copy,
 * and deletes what dist/ holds without a source (a migration removed from
 * src/ must not be applied from dist/). Unchanged files are not rewritten:
 * a `jit` started by a test running beside the build reads them whole.
 */
function syncAssets(files) {
  const sources = new Set(files);
  let copied = 0;
  for (const file of sources) {
    if (file.endsWith('.ts')) continue;
    const from = readFileSync(join(SRC, file));
    const to = join(DIST, file);
    if (exists(to) && readFileSync(to).equals(from)) continue;
    mkdirSync(dirname(to), { recursive: true });
    writeFileSync(to, from);
    copied++;
  }
  for (const file of distFiles()) {
    const source = file.replace(/\.js$/, '.ts');
    if (!sources.has(file) && !sources.has(source)) rmSync(join(DIST, file));
  }
  return copied;
}

/** Every file under dist/ but the build's own bookkeeping, relative to it. */
function distFiles(dir = DIST) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return distFiles(path);
    return path === BUILD_STAMP || path === TS_BUILD_INFO ? [] : [relative(DIST, path)];
  });
}
