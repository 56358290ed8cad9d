// Whether dist/ (the compiled JavaScript `jit` runs) is the build of the
// sources next to it. Used by bin/jit.mjs on every start, by the build
// (scripts/build.mjs) and by the tests; plain JavaScript and node: modules
// only, so it costs about a millisecond.
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('..', import.meta.url));
export const SRC = join(ROOT, 'src');
export const DIST = join(ROOT, 'dist');
/**
 * Written last by a successful build, with the time that build started as
 * its mtime: a source saved during the build is newer, so the build does
 * not count as fresh for it.
 */
export const BUILD_STAMP = join(DIST, '.build-stamp');

/**
 * "fresh": dist/ is built and nothing under src/ changed since (or there is
 * no src/, as in the Docker image and other installs of the built package);
 * "stale": a file or directory under src/ is newer than the build (an edit,
 * a checkout, a deleted file); "missing": never built, or a build is under
 * way or failed.
 */
export function distState() {
  let built;
  try {
    built = statSync(BUILD_STAMP).mtimeMs;
  } catch {
    return 'missing';
  }
  let newest;
  try {
    newest = newestMtime(SRC);
  } catch (err) {
    if (err.code === 'ENOENT') return 'fresh';
    throw err;
  }
  return newest > built ? 'stale' : 'fresh';
}

function newestMtime(dir) {
  let newest = statSync(dir).mtimeMs;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestMtime(path) : statSync(path).mtimeMs);
  }
  return newest;
}
