/**
 * How long a `jit` call takes from spawn to exit: `jit --help`, and
 * `jit gate verify`, which the git gate's pre-receive hook runs for every
 * ref of every push. Sequential spawns of `node bin/jit.mjs …` (as the hook
 * runs it), wall time each, after two uncounted warm-up calls (page cache).
 * `node -e 0` alone is measured the same way: the floor no CLI can beat.
 * Besides wall time, the CPU time the calls used (user + system, from the
 * benchmark's waited-for children in /proc/self/stat): on a shared machine
 * wall time follows the load, CPU time much less.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { distState } from '../../bin/dist-state.mjs';
import { REPO } from './processes.ts';
import { percentile } from './stats.ts';

/** The start-time budget of a CLI call (issue 17, B10). */
export const CLI_BUDGET_MS = 300;

export interface CliStartRow {
  what: string;
  command: string;
  calls: number;
  min: number;
  p50: number;
  p90: number;
  max: number;
  /** CPU milliseconds (user + system) per call; NaN where /proc is missing. */
  cpuMsPerCall: number;
  /** One-minute load average when the row started (the machine is shared). */
  load: number;
}

const WARMUP_CALLS = 2;

/**
 * Runs `node ARGS` `calls` times and returns the wall times; throws if a
 * call exits non-zero (a benchmark of a failing command
 * would measure the wrong thing).
 */
export function timeSpawns(what: string, args: string[], env: Record<string, string>, calls: number): CliStartRow {
  const times: number[] = [];
  const load = loadavg()[0]!;
  let cpuBefore = Number.NaN;
  for (let i = 0; i < WARMUP_CALLS + calls; i++) {
    if (i === WARMUP_CALLS) cpuBefore = childrenCpuMs();
    const started = process.hrtime.bigint();
    const r = spawnSync(process.execPath, args, { cwd: REPO, env: { PATH: process.env.PATH ?? '', ...env }, encoding: 'utf8', timeout: 30_000 });
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    if (r.status !== 0) throw new Error(`${what}: exit ${r.status ?? r.signal}, expected 0:\n${r.stdout}\n${r.stderr}`);
    if (i >= WARMUP_CALLS) times.push(ms);
  }
  const cpuMsPerCall = (childrenCpuMs() - cpuBefore) / calls;
  times.sort((a, b) => a - b);
  const shown = args[0]?.endsWith('jit.mjs') ? ['jit', ...args.slice(1)] : ['node', ...args];
  return { what, command: shown.join(' ').replace(/--credential \S+/, '--credential …'), calls, min: times[0]!, p50: percentile(times, 50), p90: percentile(times, 90), max: times.at(-1)!, cpuMsPerCall, load };
}

/** User + system CPU of this process's waited-for children so far (cutime + cstime, in 10 ms ticks). */
function childrenCpuMs(): number {
  try {
    const stat = readFileSync('/proc/self/stat', 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // Fields 16 and 17 of proc(5); fields[0] is field 3.
    return (Number(fields[13]) + Number(fields[14])) * 10;
  } catch {
    return Number.NaN;
  }
}

/** dist/ must be the build of src/, or bin/jit.mjs runs the sources through tsx and the rows measure that. */
export function assertBuilt(): void {
  const state = distState();
  if (state !== 'fresh') throw new Error(`dist/ is ${state}: run "npm run build" first (npm run bench does)`);
}
