// The agent package (packages/agent, @jit-broker/agent): bundles the agent
// side of src/ into packages/agent/dist with esbuild, so the package needs
// no unpublished workspace sibling and installs from the registry alone:
//   dist/cli.js    runAgentCli, the `jit-agent` bin's entry (src/agent/main.ts)
//   dist/index.js  the TypeScript client's module (src/client/index.ts)
// plus the chunks both share, and dist/types/ (the client's declarations,
// and those of the wire schemas and lib files it names, by tsc; redone
// only when one of those folders changed). The package's own dependencies stay outside
// the bundle (imports); anything else a bundled file imports from
// node_modules, or a folder of src/ other than the agent side's, fails the
// build, so no broker dependency (better-sqlite3, pg, grammy, node-vault,
// pino, …) can slip in. Only changed files are rewritten (a test may be
// running the package while this runs). Called by scripts/build.mjs.
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The folders of src/ the agent package may contain. */
export const AGENT_SOURCES = ['agent', 'client', 'mcp', 'wire', 'lib'];

export async function buildAgentPackage(root, log) {
  const started = Date.now();
  const pkgDir = join(root, 'packages', 'agent');
  const outdir = join(pkgDir, 'dist');
  const pkg = JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8'));
  const allowed = Object.keys(pkg.dependencies ?? {});
  let esbuild;
  try {
    esbuild = await import('esbuild');
  } catch {
    log('esbuild is not installed (npm ci --omit=dev?): packages/agent/dist not rebuilt');
    return;
  }
  const src = join(root, 'src');
  const guard = {
    name: 'agent-package-guard',
    setup(build) {
      build.onResolve({ filter: /^[^./]/ }, (args) => {
        if (args.path.startsWith('node:')) return { external: true };
        const name = args.path.startsWith('@') ? args.path.split('/').slice(0, 2).join('/') : args.path.split('/')[0];
        if (allowed.includes(name)) return { external: true };
        return { errors: [{ text: `${relative(root, args.importer)} imports "${args.path}", which is not a dependency of ${pkg.name} (${allowed.join(', ')})` }] };
      });
      build.onLoad({ filter: /\.ts$/ }, (args) => {
        const rel = relative(src, args.path).split(/[\\/]/);
        if (rel[0] === '..' || !AGENT_SOURCES.includes(rel[0])) {
          return { errors: [{ text: `${relative(root, args.path)} is outside the agent side of src/ (${AGENT_SOURCES.join(', ')})` }] };
        }
        // The bundle is the package's: its version is the package's, not the broker's package.json.
        if (rel.join('/') === 'lib/package-version.ts') {
          return { contents: `export function packageVersion(): string { return ${JSON.stringify(pkg.version)}; }`, loader: 'ts' };
        }
        return undefined;
      });
    },
  };
  const result = await esbuild.build({
    absWorkingDir: root,
    entryPoints: { cli: join(src, 'agent', 'main.ts'), index: join(src, 'client', 'index.ts') },
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    outdir,
    chunkNames: 'chunks/[name]-[hash]',
    write: false,
    logLevel: 'silent',
    legalComments: 'none',
    plugins: [guard],
  }).catch((err) => {
    log(`packages/agent: ${err.errors?.map((e) => e.text).join('; ') ?? err.message}`);
    process.exit(1);
  });
  const wanted = new Set();
  let written = 0;
  for (const file of result.outputFiles) {
    wanted.add(file.path);
    let same = false;
    try {
      same = readFileSync(file.path).equals(file.contents);
    } catch {}
    if (same) continue;
    mkdirSync(dirname(file.path), { recursive: true });
    writeFileSync(file.path, file.contents);
    written++;
  }
  const typesDir = join(outdir, 'types');
  for (const path of listFiles(outdir)) if (!wanted.has(path) && !path.startsWith(`${typesDir}/`)) rmSync(path);
  const types = buildTypes(root, typesDir, log);
  log(`packages/agent/dist up to date (${written} file${written === 1 ? '' : 's'} written, types ${types}, ${Date.now() - started} ms)`);
}

/**
 * dist/types/: `tsc --emitDeclarationOnly` of src/client/index.ts (its
 * program: client/, the wire/ and lib/ files it imports), relative `.ts`
 * specifiers turned into `.js` as in the bundle. Skipped while the stamp is
 * newer than every file of those folders.
 */
function buildTypes(root, typesDir, log) {
  const stamp = join(typesDir, '.stamp');
  const newest = Math.max(...['client', 'wire', 'lib'].flatMap((d) => listFiles(join(root, 'src', d))).map((f) => statSync(f).mtimeMs));
  let stampMs = 0;
  try {
    stampMs = statSync(stamp).mtimeMs;
  } catch {}
  if (stampMs > newest) return 'unchanged';
  let tsc;
  try {
    tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
  } catch {
    log('typescript is not installed: packages/agent/dist/types not rebuilt');
    return 'not rebuilt';
  }
  rmSync(typesDir, { recursive: true, force: true });
  // A project and file names cannot be mixed on tsc's command line: a generated config names the entry.
  const config = join(root, 'packages', 'agent', '.tsconfig.types.json');
  writeFileSync(
    config,
    JSON.stringify({
      extends: '../../tsconfig.json',
      compilerOptions: { noEmit: false, declaration: true, emitDeclarationOnly: true, rootDir: '../../src', outDir: './dist/types' },
      include: [],
      files: ['../../src/client/index.ts'],
    }),
  );
  const r = spawnSync(process.execPath, [tsc, '-p', config], { stdio: 'inherit' });
  rmSync(config, { force: true });
  if (r.status !== 0) {
    log(`packages/agent: tsc (declarations) failed (exit ${r.status ?? r.signal})`);
    process.exit(r.status || 1);
  }
  for (const file of listFiles(typesDir)) {
    if (!file.endsWith('.d.ts')) continue;
    const text = readFileSync(file, 'utf8');
    const fixed = text.replace(/(from\s+'\.{1,2}\/[^']*)\.ts'/g, "$1.js'");
    if (fixed !== text) writeFileSync(file, fixed);
  }
  writeFileSync(stamp, '');
  return 'rebuilt';
}

function listFiles(dir) {
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return [];
  }
  return entries.flatMap((e) => (e.isDirectory() ? listFiles(join(dir, e.name)) : [join(dir, e.name)]));
}

// `node scripts/build-agent.mjs` (the package's prepack): the bundle alone.
if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  await buildAgentPackage(resolve(dirname(fileURLToPath(import.meta.url)), '..'), (line) => process.stderr.write(`build-agent: ${line}\n`));
}
