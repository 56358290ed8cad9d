import { Agent, request as httpRequest } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { until } from '../../helpers/chaos-process.ts';
import { startClusterBroker, type ClusterBroker } from '../../helpers/cluster.ts';

/**
 * `jit serve` with JIT_HTTP_WORKERS=2: the primary answers a worker's call
 * (here /metrics, which waits on the other worker's figures) after the
 * calling worker is gone. node:cluster reports a send on a closed IPC
 * channel as an 'error' event on the Worker; with no listener that is an
 * uncaught exception that took the whole broker down.
 */
const POLICY = `
agents:
  moltbot:
    sessions: ["hook:jit:moltbot*"]
rules:
  - name: docker-read
    agents: [moltbot]
    resource: vault
    paths: ["homelab/data/docker/*"]
    capabilities: [read]
    tier: 1
    max_ttl: 1h
`;

let serve: ClusterBroker['serve'];
const stopped = new Set<number>();

/** A GET on a connection of its own; resolves with the status, or 0 when the connection failed. No clock: the test's timeout bounds it. */
function get(path: string): Promise<number> {
  return new Promise((resolve) => {
    const req = httpRequest(`${serve.url}${path}`, { agent: new Agent({ keepAlive: false }) });
    req.on('response', (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode!));
    });
    req.on('error', () => resolve(0));
    req.end();
  });
}

let cluster: ClusterBroker;
beforeAll(async () => {
  cluster = await startClusterBroker({ policy: POLICY });
  serve = cluster.serve;
}, 60_000);

afterAll(async () => {
  for (const pid of stopped) {
    try {
      process.kill(pid, 'SIGCONT');
    } catch {
      /* gone */
    }
  }
  await cluster?.close();
});

describe('JIT_HTTP_WORKERS=2: a worker that goes away mid-call', () => {
  it('does not take the primary down when it answers a call from a worker that has exited', async () => {
    // Logged before "listening on" is printed, but pino writes asynchronously: on a busy machine the line comes later.
    const listed = await until(() => /"workers":(\[[\d,]+\])/.exec(serve.output()) ?? undefined, undefined, 'the primary to log its workers', 50);
    const workers = JSON.parse(listed[1]!) as number[];
    expect(workers).toHaveLength(2);
    const [caller, slow] = workers as [number, number];

    // The slow worker cannot answer the primary's "metrics-json" call (nor take connections) until SIGCONT.
    process.kill(slow, 'SIGSTOP');
    stopped.add(slow);
    // The connections go to the worker that is running; its /metrics waits on the primary, which waits on the slow one.
    const pending = [get('/metrics'), get('/metrics'), get('/metrics')];
    await new Promise((r) => setTimeout(r, 1_000));
    process.kill(caller, 'SIGKILL');
    // The primary's call to the slow worker times out after 10 s; then it answers the dead caller.
    await new Promise((r) => setTimeout(r, 11_500));
    process.kill(slow, 'SIGCONT');
    stopped.delete(slow);
    await Promise.all(pending);

    expect(serve.child.exitCode, serve.output().slice(-3000)).toBeNull();
    expect(serve.output()).not.toMatch(/ERR_IPC_CHANNEL_CLOSED/);
    // And the broker still serves (the replacement worker, the slow one resumed).
    const statuses = await Promise.all([get('/healthz'), get('/healthz'), get('/healthz')]);
    expect(statuses).toEqual([200, 200, 200]);
  }, 60_000);
});
