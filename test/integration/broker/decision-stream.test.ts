import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RequestStreamEventData } from '../../../src/wire/events.ts';
import { startHarness, type Harness } from '../../helpers/broker-harness.ts';
import { until } from '../../helpers/chaos-process.ts';
import { runJit } from '../../helpers/cli.ts';
import { openSse, type SseEvent } from '../../helpers/sse.ts';

/**
 * GET /jit/requests/{id}/events (SPEC §14) over real HTTP, read by a raw
 * SSE reader: the current state first, decisions made by another process
 * (`jit approve` / `jit deny`), resume with Last-Event-ID, 404s, the cap,
 * heartbeats, and the stream's end after a final state.
 */

const write = (n: number) => ({ resource: 'vault', tier: 2, reason: `rotate ${n}`, vault_paths: [{ path: 'homelab/data/apps/web', capabilities: ['read', 'update'] }] });

let h: Harness;
let token: string;
let otherToken: string;
let cliEnv: Record<string, string>;

beforeAll(async () => {
  h = await startHarness({ env: { JIT_MAX_STREAMS: '3' }, start: { streams: { heartbeatMs: 100 } } });
  token = await h.addAgent('moltbot');
  otherToken = await h.addAgent('other');
  cliEnv = { JIT_DB: join(h.dir, 'jit.db'), JIT_POLICIES: h.policiesDir };
});
afterAll(() => h?.close());

async function pending(n: number): Promise<string> {
  const res = await h.call('POST', '/jit/request', { token, body: write(n) });
  expect(res.status).toBe(202);
  return res.body.id as string;
}

function stream(id: string, o: { token?: string; lastEventId?: string } = {}) {
  return openSse(`${h.broker.url}/jit/requests/${id}/events`, {
    authorization: `Bearer ${o.token ?? token}`,
    ...(o.lastEventId !== undefined ? { 'last-event-id': o.lastEventId } : {}),
  });
}

/** The request's status-changing audit seqs, as the broker numbered them. */
function seqsOf(id: string, events: string[]): number[] {
  return h.db
    .prepare(`SELECT seq FROM audit_log WHERE request_id = ? AND event IN (${events.map(() => '?').join(',')}) ORDER BY seq`)
    .pluck()
    .all(id, ...events) as number[];
}

function parsed(e: SseEvent) {
  return RequestStreamEventData.parse(e.json);
}

describe('decision stream', () => {
  it('starts with the current state, delivers a narrowed approval made by `jit approve` in another process, then issued and revoked, and closes', async () => {
    const id = await pending(1);
    const s = await stream(id);
    expect(s.status).toBe(200);
    expect(s.headers['content-type']).toMatch(/^text\/event-stream/);
    const first = await s.next();
    expect(parsed(first)).toMatchObject({ id, status: 'pending', decision: null, agent: 'moltbot' });
    expect(Number(first.id)).toBe(seqsOf(id, ['request.created'])[0]);

    const cli = await runJit(['approve', id, '--drop-capability', 'update'], cliEnv);
    expect(cli.code, cli.stderr).toBe(0);
    const approved = await s.next();
    const data = parsed(approved);
    expect(data.status).toBe('approved');
    expect(data.decision).toMatchObject({ approver: 'local-cli', narrowed: true, granted: { vault_paths: [{ path: 'homelab/data/apps/web', capabilities: ['read'] }] } });
    expect(Number(approved.id)).toBe(seqsOf(id, ['request.approved'])[0]);
    // From the decision's commit (its time, written by the CLI's own clock) to the event read here: bounded by the hub's poll.
    const latency = approved.at - Date.parse(data.decision!.decided_at!);
    console.log(`decision stream: \`jit approve\` in another process reached the stream in ${latency} ms`);
    expect(latency).toBeLessThan(1000);

    expect((await h.call('POST', `/jit/requests/${id}/claim`, { token })).status).toBe(201);
    const issued = await s.next();
    expect(parsed(issued)).toMatchObject({ status: 'issued', credential: { state: 'live' } });
    expect(JSON.stringify(issued.json)).not.toMatch(/hvs\./);
    expect((await h.call('POST', `/jit/requests/${id}/revoke`, { token })).status).toBe(200);
    const revoked = await s.next();
    expect(parsed(revoked).status).toBe('revoked');
    await s.ended;
    expect(s.events.map((e) => Number(e.id))).toEqual(seqsOf(id, ['request.created', 'request.approved', 'credential.issued', 'request.revoked']));
  });

  it('a denial by `jit deny` carries its reason and ends the stream', async () => {
    const id = await pending(2);
    const s = await stream(id);
    expect(parsed(await s.next()).status).toBe('pending');
    expect((await runJit(['deny', id, '--reason', 'not during the freeze'], cliEnv)).code).toBe(0);
    const denied = parsed(await s.next());
    expect(denied).toMatchObject({ status: 'denied', decision: { approver: 'local-cli', reason: 'not during the freeze', granted: null, narrowed: false } });
    await s.ended;
    expect(s.events).toHaveLength(2);
  });

  it('resumes after a cut with exactly the missed events, in order, then goes on live', async () => {
    const id = await pending(3);
    const s = await stream(id);
    const first = await s.next();
    s.close();
    await s.ended;
    // While nobody listens: approved (another process) and issued.
    expect((await runJit(['approve', id], cliEnv)).code).toBe(0);
    expect((await h.call('POST', `/jit/requests/${id}/claim`, { token })).status).toBe(201);

    const resumed = await stream(id, { lastEventId: first.id! });
    const a = await resumed.next();
    const b = await resumed.next();
    expect([parsed(a).status, parsed(b).status]).toEqual(['approved', 'issued']);
    expect([Number(a.id), Number(b.id)]).toEqual(seqsOf(id, ['request.approved', 'credential.issued']));
    expect(parsed(a).decision).toMatchObject({ narrowed: false, granted: { vault_paths: [{ path: 'homelab/data/apps/web', capabilities: ['read', 'update'] }] } });
    resumed.close();

    // From the approval on: only issued, then the live revocation.
    const again = await stream(id, { lastEventId: a.id! });
    expect(Number((await again.next()).id)).toBe(Number(b.id));
    expect((await h.call('POST', `/jit/requests/${id}/revoke`, { token })).status).toBe(200);
    const revoked = await again.next();
    expect(parsed(revoked).status).toBe('revoked');
    await again.ended;
    expect(again.events).toHaveLength(2);

    // After the final event: nothing more will come, the stream ends at once.
    const after = await stream(id, { lastEventId: revoked.id! });
    await after.ended;
    expect(after.events).toEqual([]);
  });

  it("another agent's request and an unknown id are the same 404; a bad token the same 401 as elsewhere; a bad Last-Event-ID 400", async () => {
    const id = await pending(4);
    const unknown = 'req_' + '0'.repeat(26);
    const theirs = await stream(id, { token: otherToken });
    const none = await stream(unknown, { token: otherToken });
    expect([theirs.status, none.status]).toEqual([404, 404]);
    expect(theirs.headers['content-type']).toMatch(/^application\/problem\+json/);
    // The same answer but for the id it names and the X-Request-Id it carries.
    const same = (body: any, named: string) => ({ ...body, detail: body.detail.replace(named, 'ID'), request_id: 'X' });
    expect(same(theirs.body, id)).toEqual(same(none.body, unknown));

    const bad = await stream(id, { token: 'jit_nope_nope' });
    const elsewhere = await h.call('GET', `/jit/requests/${id}`, { token: 'jit_nope_nope' });
    expect(bad.status).toBe(401);
    expect({ ...bad.body, request_id: 'X' }).toEqual({ ...elsewhere.body, request_id: 'X' });

    // HEAD opens no stream (Hono runs the GET handler for it and drops the body).
    await until(() => h.broker.streams.openCount() === 0, undefined, "the earlier tests' streams closed on the server", 10);
    const head = await fetch(`${h.broker.url}/jit/requests/${id}/events`, { method: 'HEAD', headers: { authorization: `Bearer ${token}` } });
    expect([head.status, head.headers.get('content-type')]).toEqual([200, 'text/event-stream']);
    expect(h.broker.streams.openCount()).toBe(0);

    const badId = await stream(id, { lastEventId: 'abc' });
    expect(badId.status).toBe(400);
    expect(badId.body.detail).toMatch(/Last-Event-ID/);
  });

  it('caps open streams per agent (429 problem+json), and a closed stream frees its slot', async () => {
    const ids = [await pending(5), await pending(6), await pending(7), await pending(8)];
    const open = await Promise.all(ids.slice(0, 3).map((id) => stream(id)));
    for (const s of open) expect(parsed(await s.next()).status).toBe('pending');
    const metrics = (await h.call('GET', '/metrics')).body as string;
    expect(metrics).toMatch(/^jit_decision_streams_open 3$/m);
    const refused = await stream(ids[3]!);
    expect(refused.status).toBe(429);
    expect(refused.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(refused.body).toMatchObject({ code: 'TOO_MANY_STREAMS', status: 429 });
    expect(refused.body.detail).toContain('limit 3');
    // Another agent is not held back by this one's streams.
    expect((await stream(ids[3]!, { token: otherToken })).status).toBe(404);

    open[0]!.close();
    await until(() => h.broker.streams.openCount() < 3, undefined, 'the cut stream closed on the server', 10);
    const admitted = await stream(ids[3]!);
    expect(admitted.status).toBe(200);
    expect(parsed(await admitted.next()).id).toBe(ids[3]);
    for (const s of [...open, admitted]) s.close();
  });

  it('sends heartbeat comments while idle', async () => {
    const id = await pending(9);
    const s = await stream(id);
    await s.next();
    await s.until(() => s.comments.length >= 2);
    expect(s.comments.slice(0, 2)).toEqual(['heartbeat', 'heartbeat']);
    expect(s.events).toHaveLength(1);
    s.close();
  });

  it('is described in /openapi.json as text/event-stream with the RequestView data schema', async () => {
    const doc = (await h.call('GET', '/openapi.json')).body;
    const op = doc.paths['/jit/requests/{id}/events'].get;
    expect(Object.keys(op.responses['200'].content)).toEqual(['text/event-stream']);
    expect(op.responses['200'].content['text/event-stream'].schema).toEqual({ $ref: '#/components/schemas/RequestView' });
    expect(op.responses['429'].content['application/problem+json']).toBeDefined();
    expect(op.parameters.map((p: { name: string }) => p.name)).toEqual(expect.arrayContaining(['id', 'Last-Event-ID']));
  });
});

describe('decision stream at shutdown', () => {
  it('closes every open stream and the broker stops', async () => {
    const b = await startHarness();
    try {
      const t = await b.addAgent('moltbot');
      const id = (await b.call('POST', '/jit/request', { token: t, body: write(10) })).body.id as string;
      const s = await openSse(`${b.broker.url}/jit/requests/${id}/events`, { authorization: `Bearer ${t}` });
      await s.next();
      await b.broker.stop();
      await s.ended;
      expect(s.events).toHaveLength(1);
      expect(b.broker.streams.openCount()).toBe(0);
    } finally {
      await b.close();
    }
  });
});
