// Records every module a Node process loads, for tests that guard a
// command's module graph (not its time). Load it first with
// NODE_OPTIONS="--import=<this file's URL>" and JIT_TEST_MODULE_GRAPH=<file>;
// the file then holds one line per module:
//   - every URL an ES module import resolved to (a resolve hook: packages
//     imported from ES modules, CommonJS ones included, and our own files);
//   - at exit, every CommonJS file in require.cache (what CommonJS
//     packages require in turn, which the hook does not see);
//   - at exit, "builtin:" and each entry of process.moduleLoadList (Node's
//     own modules, e.g. "NativeModule internal/deps/undici/undici" once
//     fetch is used).
// Node 20 has no synchronous module.registerHooks, so the hook runs on the
// loader thread (module.register); it appends before answering, so a line
// is written before the import it belongs to finishes.
import { appendFileSync } from 'node:fs';
import { createRequire, register } from 'node:module';
import { pathToFileURL } from 'node:url';

const out = process.env.JIT_TEST_MODULE_GRAPH;
if (!out) throw new Error('module-graph.mjs: set JIT_TEST_MODULE_GRAPH to the file to write');

const hooks = `
import { appendFileSync } from 'node:fs';
let out;
export function initialize(data) { out = data.out; }
export async function resolve(specifier, context, next) {
  const resolved = await next(specifier, context);
  appendFileSync(out, resolved.url + '\\n');
  return resolved;
}`;
register(`data:text/javascript,${encodeURIComponent(hooks)}`, { data: { out } });

process.on('exit', () => {
  const cjs = Object.keys(createRequire(import.meta.url).cache).map((p) => pathToFileURL(p).href);
  const builtins = process.moduleLoadList.map((m) => `builtin:${m}`);
  appendFileSync(out, [...cjs, ...builtins].join('\n') + '\n');
});
