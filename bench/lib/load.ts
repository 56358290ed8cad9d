/**
 * Closed-loop HTTP load with autocannon: `connections` clients, each sending
 * its sequence of requests back to back. Latency is taken from autocannon's
 * per-response timer (high resolution), summed over the steps of one
 * operation, so a two-call Vault operation and a one-call broker request
 * are measured the same way.
 *
 * One autocannon run per load: the first `warmupSeconds` warm the server
 * up (JIT, caches, connections) and are not counted, and neither is the
 * first operation of each connection, whose latency includes waiting to
 * be accepted: a Node server whose event loop is saturated accepts one new
 * connection per loop turn, so the 64th connection of a load can wait
 * seconds for its first answer (a trivial CPU-bound Node server does the
 * same). Throughput, latency and CPU are those of the measured window.
 */
import autocannon, { type AutocannonRequest } from 'autocannon';
import { readdirSync, readFileSync } from 'node:fs';
import { summarize, type Summary } from './stats.ts';

/** CPU time (user + system, ms) a process has used so far, from /proc; NaN where there is no /proc. */
export function processCpuMs(pid: number): number {
  // The process and its descendants.
  const stats = new Map<number, { ppid: number; ms: number }>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const fields = readFileSync(`/proc/${entry}/stat`, 'utf8').split(') ')[1]!.split(' ');
      stats.set(Number(entry), { ppid: Number(fields[1]), ms: ((Number(fields[11]) + Number(fields[12])) * 1000) / 100 }); // clock ticks (USER_HZ = 100)
    } catch {
      // exited meanwhile
    }
  }
  if (!stats.has(pid)) return Number.NaN;
  let total = 0;
  const queue = [pid];
  while (queue.length > 0) {
    const p = queue.pop()!;
    total += stats.get(p)?.ms ?? 0;
    for (const [child, s] of stats) if (s.ppid === p) queue.push(child);
  }
  return total;
}

export interface LoadOptions {
  url: string;
  connections: number;
  /** Length of the measured window. */
  seconds: number;
  /** Uncounted warm-up before the measured window (same connections). */
  warmupSeconds?: number;
  /** One operation: these requests in order (autocannon loops over them). */
  requests: AutocannonRequest[];
  headers?: Record<string, string>;
  /** Status expected for each step; anything else is counted in `unexpected`. */
  expect: number | number[];
  /** Processes whose CPU time per operation is reported, by name. */
  cpuOf?: Record<string, number>;
  /** Headers of connection `i` (replacing the request's own), e.g. one agent token per connection. */
  connectionHeaders?: (i: number) => Record<string, string>;
}

export interface LoadResult extends Summary {
  connections: number;
  /** Operations completed (all steps answered) in the measured window. */
  ops: number;
  seconds: number;
  opsPerSecond: number;
  errors: number;
  /** Responses with an unexpected status, by status (whole run). */
  unexpected: Record<string, number>;
  /** CPU milliseconds per operation of each process in `cpuOf`, and of the load generator (`client`), in the measured window. */
  cpuMsPerOp: Record<string, number>;
  /** Slowest first operation of a connection (excluded from the figures above): connection set-up under load. */
  slowestFirstMs: number;
  /** Each operation's latency in the measured window (dropped from --json). */
  latencies?: number[];
}

/** Runs one load and resolves with throughput and per-operation latency over the measured window. */
export function runLoad(o: LoadOptions): Promise<LoadResult> {
  const steps = o.requests.length;
  const expected = new Set(Array.isArray(o.expect) ? o.expect : [o.expect]);
  const warmupMs = (o.warmupSeconds ?? 0) * 1000;
  const latencies: number[] = [];
  const unexpected: Record<string, number> = {};
  let slowestFirstMs = 0;
  let connection = 0;
  let windowStart = Number.POSITIVE_INFINITY;
  let cpuBefore: Record<string, number> = {};
  let clientBefore = process.cpuUsage();
  const startWindow = () => {
    windowStart = performance.now();
    cpuBefore = Object.fromEntries(Object.entries(o.cpuOf ?? {}).map(([name, pid]) => [name, processCpuMs(pid)]));
    clientBefore = process.cpuUsage();
  };
  const timer = warmupMs > 0 ? setTimeout(startWindow, warmupMs) : undefined;
  if (!timer) startWindow();
  return new Promise((resolve, reject) => {
    autocannon(
      {
        url: o.url,
        connections: o.connections,
        pipelining: 1,
        duration: o.seconds + warmupMs / 1000,
        timeout: 30,
        ...(o.headers ? { headers: o.headers } : {}),
        requests: o.requests,
        setupClient(client) {
          if (o.connectionHeaders) client.setHeaders(o.connectionHeaders(connection++));
          let step = 0;
          let acc = 0;
          let first = true;
          client.on('response', (status, _bytes, ms) => {
            if (!expected.has(status)) unexpected[status] = (unexpected[status] ?? 0) + 1;
            acc += ms;
            if (++step < steps) return;
            if (first) {
              first = false;
              slowestFirstMs = Math.max(slowestFirstMs, acc);
            } else if (performance.now() >= windowStart) {
              latencies.push(acc);
            }
            step = 0;
            acc = 0;
          });
        },
      },
      (err, result) => {
        clearTimeout(timer);
        if (err) return reject(err);
        const seconds = (performance.now() - windowStart) / 1000;
        const ops = latencies.length;
        const client = process.cpuUsage(clientBefore);
        const cpuMsPerOp: Record<string, number> = { client: (client.user + client.system) / 1000 / ops };
        for (const [name, pid] of Object.entries(o.cpuOf ?? {})) cpuMsPerOp[name] = (processCpuMs(pid) - cpuBefore[name]!) / ops;
        resolve({
          ...summarize(latencies),
          connections: o.connections,
          ops,
          seconds,
          opsPerSecond: ops / seconds,
          errors: result.errors,
          unexpected,
          cpuMsPerOp,
          slowestFirstMs,
          latencies,
        });
      },
    );
  });
}

/**
 * One load spread over several servers (several brokers on one database):
 * `connections` split evenly, one autocannon run per server, all started
 * together with the same warm-up. Throughput is the sum, latency taken over
 * every operation of every server, and CPU per operation over the common
 * measured window (from the end of the warm-up to the end of the last run).
 */
export async function runSplitLoad(o: Omit<LoadOptions, 'url' | 'cpuOf' | 'connectionHeaders'> & { urls: string[]; cpuOf?: Record<string, number>; connectionHeaders?: (i: number) => Record<string, string> }): Promise<LoadResult> {
  const per = Math.floor(o.connections / o.urls.length);
  if (per < 1 || per * o.urls.length !== o.connections) throw new Error(`${o.connections} connections do not split evenly over ${o.urls.length} servers`);
  const warmupMs = (o.warmupSeconds ?? 0) * 1000;
  let cpuBefore: Record<string, number> = {};
  let clientBefore = process.cpuUsage();
  let windowStart = performance.now();
  const mark = () => {
    windowStart = performance.now();
    cpuBefore = Object.fromEntries(Object.entries(o.cpuOf ?? {}).map(([name, pid]) => [name, processCpuMs(pid)]));
    clientBefore = process.cpuUsage();
  };
  const timer = setTimeout(mark, warmupMs);
  let results: LoadResult[];
  try {
    results = await Promise.all(
      o.urls.map((url, k) => {
        const { urls: _urls, cpuOf: _cpuOf, connectionHeaders, ...rest } = o;
        return runLoad({ ...rest, url, connections: per, ...(connectionHeaders ? { connectionHeaders: (i: number) => connectionHeaders(k * per + i) } : {}) });
      }),
    );
  } finally {
    clearTimeout(timer);
  }
  const seconds = (performance.now() - windowStart) / 1000;
  const latencies = results.flatMap((r) => r.latencies ?? []);
  const ops = latencies.length;
  const client = process.cpuUsage(clientBefore);
  const cpuMsPerOp: Record<string, number> = { client: (client.user + client.system) / 1000 / ops };
  for (const [name, pid] of Object.entries(o.cpuOf ?? {})) cpuMsPerOp[name] = (processCpuMs(pid) - cpuBefore[name]!) / ops;
  const unexpected: Record<string, number> = {};
  for (const r of results) for (const [k, v] of Object.entries(r.unexpected)) unexpected[k] = (unexpected[k] ?? 0) + v;
  return {
    ...summarize(latencies),
    connections: o.connections,
    ops,
    seconds,
    // Each run's own rate, summed (their windows are the same 2 s-late start to within a timer tick).
    opsPerSecond: results.reduce((n, r) => n + r.opsPerSecond, 0),
    errors: results.reduce((n, r) => n + r.errors, 0),
    unexpected,
    cpuMsPerOp,
    slowestFirstMs: Math.max(...results.map((r) => r.slowestFirstMs)),
    latencies,
  };
}
