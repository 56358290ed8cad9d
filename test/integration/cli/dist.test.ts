import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { distState } from '../../../bin/dist-state.mjs';
import { runJit, startJitServe } from '../../helpers/cli.ts';

/**
 * The shipped JavaScript: `jit` runs dist/ (built by `npm run build`, which
 * `npm ci` runs as `prepare` and `npm test` as `pretest`), and what it needs
 * at run time is in `dependencies` — tsx and the compiler are development
 * dependencies. The install an operator gets (`npm ci && npm prune
 * --omit=dev`, or the Docker image) is rebuilt here: package.json, bin/,
 * dist/ and only the non-development packages of package-lock.json; no src/,
 * no tsx. jit must run there, migrations, worker thread and all.
 */
const REPO = join(import.meta.dirname, '..', '..', '..');
const pkg = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as {
  version: string;
  scripts: Record<string, string>;
  dependencies: Record<string, string>;
  devDependencies: Record<string, string>;
};
const lock = JSON.parse(readFileSync(join(REPO, 'package-lock.json'), 'utf8')) as {
  packages: Record<string, { dev?: boolean; devOptional?: boolean; link?: boolean }>;
};

describe('package.json', () => {
  it('keeps tsx and the compiler out of the runtime dependencies', () => {
    expect(Object.keys(pkg.dependencies)).not.toContain('tsx');
    expect(Object.keys(pkg.dependencies)).not.toContain('typescript');
    expect(Object.keys(pkg.devDependencies)).toEqual(expect.arrayContaining(['tsx', 'typescript']));
    // The lockfile agrees: `npm ci --omit=dev` / `npm prune --omit=dev` leave tsx out.
    expect(lock.packages['node_modules/tsx']?.dev).toBe(true);
    expect(lock.packages['node_modules/typescript']?.dev).toBe(true);
  });

  it('builds on npm ci (prepare), before the tests and before the benchmark', () => {
    expect(pkg.scripts.build).toBeDefined();
    for (const hook of ['prepare', 'pretest', 'prebench']) expect(pkg.scripts[hook], hook).toContain('npm run build');
    expect(pkg.scripts.start).toBe('node bin/jit.mjs serve');
  });
});

/**
 * package.json, bin/ and (with `dist`) dist/ in `app`, and a node_modules of
 * the lockfile's production packages only (nested ones come inside their
 * parent), linked to this checkout's.
 */
function productionLayout(app: string, o: { dist: boolean }): void {
  mkdirSync(app, { recursive: true });
  cpSync(join(REPO, 'package.json'), join(app, 'package.json'));
  cpSync(join(REPO, 'bin'), join(app, 'bin'), { recursive: true });
  if (o.dist) cpSync(join(REPO, 'dist'), join(app, 'dist'), { recursive: true });
  for (const [path, entry] of Object.entries(lock.packages)) {
    if (!path.startsWith('node_modules/') || path.lastIndexOf('node_modules/') !== 0 || entry.dev || entry.devOptional) continue;
    mkdirSync(dirname(join(app, path)), { recursive: true });
    symlinkSync(join(REPO, path), join(app, path), 'dir');
  }
}

describe('bin/jit.mjs from dist/, as installed without development dependencies', () => {
  let root: string;
  let env: Record<string, string>;
  beforeAll(() => {
    // dist/ is what this test ships; it must be the build of the current src/.
    expect(distState(), 'dist/ is missing or older than src/: run "npm run build" (npm test does)').toBe('fresh');
    root = mkdtempSync(join(tmpdir(), 'jit-dist-'));
    const app = join(root, 'app');
    productionLayout(app, { dist: true });
    const tsx = spawnSync(process.execPath, ['--input-type=module', '-e', 'import("tsx/esm/api").then(() => console.log("found"), (e) => console.log(e.code))'], { cwd: app, encoding: 'utf8' });
    expect(tsx.stdout.trim(), 'tsx must not be resolvable in the production layout').toBe('ERR_MODULE_NOT_FOUND');
    env = { JIT_DB: join(root, 'data', 'jit.db'), JIT_POLICIES: join(REPO, 'policies'), JIT_PORT: '0', JIT_DEV_VAULT_PORT: '0', HOME: root };
  });
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  const bin = () => join(root, 'app', 'bin', 'jit.mjs');

  it('--version, --help and an operator command with its migrations', async () => {
    const opts = { bin: bin(), cwd: join(root, 'app') };
    expect(await runJit(['--version'], env, 20_000, opts)).toEqual({ code: 0, stdout: `${pkg.version}\n`, stderr: '' });
    const help = await runJit(['--help'], env, 20_000, opts);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('Usage: jit <command>');
    const add = await runJit(['agent', 'add', 'dist-check'], env, 20_000, opts);
    expect(add.code, add.stderr).toBe(0);
    expect(add.stdout.trim().split('\n').at(-1)).toMatch(/^jit_/);
    const verify = await runJit(['audit', 'verify'], env, 20_000, opts);
    expect(verify.code, verify.stderr).toBe(0);
    // No service has run on this database, so no chain head is signed yet: verify says what it could not check.
    expect(verify.stdout).toBe('audit log intact: 1 entries\nno signed head checked: removal of entries from the end cannot be detected\n');
  });

  it('jit serve starts (dev mode, checkpoint worker thread) and stops on SIGTERM', async () => {
    const server = await startJitServe({ ...env, JIT_DB: join(root, 'serve', 'jit.db') }, { bin: bin(), cwd: join(root, 'app') });
    const health = await fetch(`${server.url}/healthz`);
    expect(health.status).toBe(200);
    expect(await server.stop()).toBe(0);
    // No error logged, no stack trace, nothing the layout lacked (a module, a migration, the worker file).
    expect(server.output()).not.toMatch(/"level":[56]0|Error: |ENOENT|ERR_/);
  });

  it('without a build (and without tsx) it says so in one line, exit 1', async () => {
    const bare = join(root, 'unbuilt');
    productionLayout(bare, { dist: false });
    expect(await runJit(['--version'], env, 20_000, { bin: join(bare, 'bin', 'jit.mjs'), cwd: bare })).toEqual({
      code: 1,
      stdout: '',
      stderr: 'jit: dist/ is not built and tsx is not installed: run "npm ci" (it builds) or "npm run build"\n',
    });
  });
});

describe('bin/jit.mjs in a checkout whose src/ changed after the build', () => {
  let root: string;
  beforeAll(() => {
    root = mkdtempSync(join(tmpdir(), 'jit-stale-'));
    for (const part of ['package.json', 'bin', 'dist', 'src']) cpSync(join(REPO, part), join(root, part), { recursive: true });
    symlinkSync(join(REPO, 'node_modules'), join(root, 'node_modules'), 'dir');
  });
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it('runs the sources through tsx until the next build, then dist/ again', async () => {
    const at = { bin: join(root, 'bin', 'jit.mjs'), cwd: root };
    const main = join(root, 'src', 'cli', 'main.ts');
    // An edit after the build, visible in the output.
    writeFileSync(main, readFileSync(main, 'utf8').replace('Usage: jit <command> [options]', 'Usage: jit <command> [options] (edited)'));
    const edited = await runJit(['--help'], {}, 20_000, at);
    expect(edited.code, edited.stderr).toBe(0);
    expect(edited.stdout).toContain('(edited)');
    // A build after the edit (its stamp newer than every source) runs dist/, which lacks the edit.
    const later = new Date(Date.now() + 60_000);
    utimesSync(join(root, 'dist', '.build-stamp'), later, later);
    const built = await runJit(['--help'], {}, 20_000, at);
    expect(built.code, built.stderr).toBe(0);
    expect(built.stdout).toContain('Usage: jit <command> [options]\n');
    expect(built.stdout).not.toContain('(edited)');
  });
});
