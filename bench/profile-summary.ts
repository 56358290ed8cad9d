/**
 * Sums V8 CPU profiles (.cpuprofile, from `node --cpu-prof`; the bench
 * writes them with BENCH_CPU_PROF=DIR) by self time: per function and per
 * module (package, or file of this project), top N of each.
 *
 *   node --import tsx bench/profile-summary.ts DIR_OR_FILE… [--top 30] [--requests N]
 *
 * A profile does not know how many requests it covers (warm-up and start-up
 * included): pass `--requests N` to also get µs per request. Idle time is
 * left out of every figure.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

const { values: args, positionals } = parseArgs({
  allowPositionals: true,
  options: { top: { type: 'string', default: '30' }, requests: { type: 'string' } },
});

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}
interface Profile {
  nodes: Node[];
  samples: number[];
  timeDeltas: number[];
}

const files = positionals.flatMap((p) =>
  statSync(p).isDirectory() ? readdirSync(p).filter((f) => f.endsWith('.cpuprofile')).map((f) => join(p, f)) : [p],
);

/** The module a URL belongs to: node:internals, a package in node_modules, or a file of this project. */
function moduleOf(url: string): string {
  if (!url) return '(native/vm)';
  if (url.startsWith('node:')) return url;
  const nm = url.lastIndexOf('node_modules/');
  if (nm >= 0) {
    const rest = url.slice(nm + 'node_modules/'.length).split('/');
    return rest[0]!.startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]!;
  }
  const m = /\/(dist|src)\/(.*)$/.exec(url);
  return m ? m[2]! : url;
}

const byFn = new Map<string, number>();
const byModule = new Map<string, number>();
let total = 0;
for (const file of files) {
  const prof = JSON.parse(readFileSync(file, 'utf8')) as Profile;
  const nodes = new Map(prof.nodes.map((n) => [n.id, n]));
  for (let i = 0; i < prof.samples.length; i++) {
    const n = nodes.get(prof.samples[i]!)!;
    const us = prof.timeDeltas[i] ?? 0;
    const { functionName, url, lineNumber } = n.callFrame;
    if (functionName === '(idle)') continue;
    total += us;
    const mod = moduleOf(url);
    const fn = `${functionName || '(anonymous)'} ${mod}${url ? `:${lineNumber + 1}` : ''}`;
    byFn.set(fn, (byFn.get(fn) ?? 0) + us);
    byModule.set(mod, (byModule.get(mod) ?? 0) + us);
  }
}

const top = Number(args.top);
const requests = args.requests ? Number(args.requests) : undefined;
const line = (name: string, us: number) =>
  `${(us / 1000).toFixed(0).padStart(8)} ms ${((100 * us) / total).toFixed(1).padStart(5)} %${requests ? ` ${(us / requests).toFixed(1).padStart(7)} µs/req` : ''}  ${name}`;
const print = (title: string, m: Map<string, number>) => {
  console.log(`\n## ${title}`);
  for (const [name, us] of [...m].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(line(name, us));
};
console.log(`${files.length} profile(s), ${(total / 1000).toFixed(0)} ms busy (idle excluded)${requests ? `, ${requests} requests` : ''}`);
print('self time by module', byModule);
print('self time by function', byFn);
