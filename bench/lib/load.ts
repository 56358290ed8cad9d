/**
 * Closed-loop HTTP load with autocannon: `connections` clients, each sending
 * its sequence of requests back to back for `seconds`. Latency is taken
 * from autocannon's per-response timer (high resolution), summed over the
 * steps of one operation, so a two-call Vault operation and a one-call
 * broker request are measured the same way.
 */
import autocannon, { type AutocannonRequest } from 'autocannon';
import { summarize, type Summary } from './stats.ts';

export interface LoadOptions {
  url: string;
  connections: number;
  seconds: number;
  /** One operation: these requests in order (autocannon loops over them). */
  requests: AutocannonRequest[];
  headers?: Record<string, string>;
  /** Status expected for each step; anything else is counted in `unexpected`. */
  expect: number | number[];
}

export interface LoadResult extends Summary {
  connections: number;
  /** Completed operations (all steps answered). */
  ops: number;
  seconds: number;
  opsPerSecond: number;
  errors: number;
  /** Responses with an unexpected status, by status. */
  unexpected: Record<string, number>;
}

/** Runs one load and resolves with throughput and per-operation latency. */
export function runLoad(o: LoadOptions): Promise<LoadResult> {
  const steps = o.requests.length;
  const expected = new Set(Array.isArray(o.expect) ? o.expect : [o.expect]);
  const latencies: number[] = [];
  const unexpected: Record<string, number> = {};
  return new Promise((resolve, reject) => {
    autocannon(
      {
        url: o.url,
        connections: o.connections,
        pipelining: 1,
        duration: o.seconds,
        timeout: 30,
        ...(o.headers ? { headers: o.headers } : {}),
        requests: o.requests,
        setupClient(client) {
          let step = 0;
          let acc = 0;
          client.on('response', (status, _bytes, ms) => {
            if (!expected.has(status)) unexpected[status] = (unexpected[status] ?? 0) + 1;
            acc += ms;
            if (++step === steps) {
              latencies.push(acc);
              step = 0;
              acc = 0;
            }
          });
        },
      },
      (err, result) => {
        if (err) return reject(err);
        const seconds = result.duration;
        resolve({
          ...summarize(latencies),
          connections: o.connections,
          ops: latencies.length,
          seconds,
          opsPerSecond: latencies.length / seconds,
          errors: result.errors,
          unexpected,
        });
      },
    );
  });
}
