import { afterEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../../../src/config/config.ts';
import { createIdGenerator } from '../../../src/lib/ids.ts';
import { createOutboxSink } from '../../../src/webhooks/outbox.ts';
import { startWebhookReceiver, type WebhookReceiver } from '../../fakes/webhook-receiver.ts';
import { insertRequest, policiesWith } from '../../unit/webhooks/helpers.ts';
import { HOOKS_TOKEN, makeWorld, type World } from './setup.ts';

/**
 * Where a decision webhook goes, with which token, and with which public
 * URL, is decided by the dispatcher (the service's configuration) when it
 * sends, never by whoever wrote the outbox row.
 */
let w: World;
let other: WebhookReceiver | undefined;
afterEach(async () => {
  await w?.close();
  await other?.close();
  other = undefined;
});

describe('the OpenClaw bearer token goes only to the configured OpenClaw origin', () => {
  it('a per-agent OpenClaw URL on another origin gets no Authorization header; one on the same origin does', async () => {
    other = await startWebhookReceiver({ jwks: { keys: [] } });
    const foreign = other;
    w = await makeWorld({}, ({ openclaw }) => ({
      elsewhere: { kind: 'openclaw', url: `${foreign.url}/hooks` },
      samehost: { kind: 'openclaw', url: `${openclaw.url}/team-hooks` },
    }));
    const toForeign = await w.record('elsewhere');
    const toSame = await w.record('samehost');
    const toConfig = await w.record('moltbot');
    expect(await w.dispatcher().drainOnce()).toEqual({ delivered: 3, retried: 0, dead: 0 });

    expect(other.requests).toHaveLength(1);
    expect(other.requests[0]!.path).toBe('/hooks/agent');
    expect(other.requests[0]!.headers['webhook-id']).toBe(toForeign.id);
    expect(other.requests[0]!.headers.authorization).toBeUndefined();
    expect(JSON.stringify(other.requests[0]!.headers)).not.toContain(HOOKS_TOKEN);

    const byId = new Map(w.openclaw.requests.map((r) => [r.headers['webhook-id'], r]));
    expect(byId.get(toSame.id)!.path).toBe('/team-hooks/agent');
    expect(byId.get(toSame.id)!.headers.authorization).toBe(`Bearer ${HOOKS_TOKEN}`);
    expect(byId.get(toConfig.id)!.path).toBe('/hooks/agent');
    expect(byId.get(toConfig.id)!.headers.authorization).toBe(`Bearer ${HOOKS_TOKEN}`);
  });

  it('a 401 from another origin is dead at once and says why no token was sent', async () => {
    other = await startWebhookReceiver({ jwks: { keys: [] }, bearer: 'their-own-token' });
    const foreign = other;
    w = await makeWorld({}, () => ({ elsewhere: { kind: 'openclaw', url: `${foreign.url}/hooks` } }));
    const row = await w.record('elsewhere');
    expect(await w.dispatcher().drainOnce()).toEqual({ delivered: 0, retried: 0, dead: 1 });
    expect((await w.row(row.id)).last_error).toMatch(/origin differs from OPENCLAW_HOOKS_URL/);
  });
});

describe('rendered by the dispatcher, with the service configuration', () => {
  it('a row written where OPENCLAW_HOOKS_URL and JIT_PUBLIC_URL are unset is sent with the dispatcher\'s URL, token and public URL', async () => {
    w = await makeWorld();
    // The writer's configuration (a shell with nothing set) knows neither the hooks URL nor the public URL.
    const shell = loadConfig({ JIT_DB: w.dbPath });
    expect(shell.openclaw).toBeUndefined();
    const sink = createOutboxSink({ storage: w.storage, policies: policiesWith({ moltbot: { kind: 'openclaw' } }), ids: createIdGenerator(), log: w.logs.log });
    const r = await insertRequest(w.storage, { created_at: w.clock.now() });
    await w.storage.transaction((tx) => sink.record(tx, r, 'approved', w.clock.now()));
    const [row] = (await w.storage.outbox.list()).filter((x) => x.request_id === r.id);
    expect(row!.state).toBe('pending');
    expect(row!.body).not.toContain(HOOKS_TOKEN);

    expect(await w.dispatcher().drainOnce()).toEqual({ delivered: 1, retried: 0, dead: 0 });
    const [got] = w.openclaw.requests;
    expect(got!.headers.authorization).toBe(`Bearer ${HOOKS_TOKEN}`);
    expect(JSON.parse(got!.body).message).toContain(`https://jit.example.net/jit/requests/${r.id}/claim`);
  });

  it('the service without OPENCLAW_HOOKS_URL dead-letters the event at delivery, with a warning naming the variable', async () => {
    w = await makeWorld({ OPENCLAW_HOOKS_URL: undefined });
    const row = await w.record('moltbot');
    expect((await w.row(row.id)).state).toBe('pending');
    expect(await w.dispatcher().drainOnce()).toEqual({ delivered: 0, retried: 0, dead: 1 });
    expect((await w.row(row.id)).last_error).toMatch(/OPENCLAW_HOOKS_URL is not set in the service's environment/);
    expect(w.audit('webhook.dead')[0]!.data).toMatchObject({ event_id: row.id, reason: 'not_configured' });
    expect(w.logs.text()).toMatch(/"level":40[^\n]*OPENCLAW_HOOKS_URL is not set/);
  });

  it('a row an earlier version wrote (rendered body, URL resolved then) is sent byte for byte, to the configured OpenClaw URL', async () => {
    w = await makeWorld();
    const r = await insertRequest(w.storage, { created_at: w.clock.now() });
    const legacyBody = JSON.stringify({ message: 'rendered by 0.x', name: 'JIT broker', sessionKey: 'hook:jit:moltbot', wakeMode: 'now', deliver: false });
    // The columns the previous version wrote; the ones 0009 added take their defaults.
    w.db
      .prepare(`INSERT INTO webhook_outbox (id, request_id, type, target, url, url_source, session_key, body, state, attempts, next_attempt_at, created_at, updated_at)
        VALUES ('evt_legacy0000000000000000000', ?, 'jit.request.approved', 'openclaw', 'http://127.0.0.1:1/hooks/agent', 'config', 'hook:jit:moltbot', ?, 'pending', 0, ?, ?, ?)`)
      .run(r.id, legacyBody, w.clock.now(), w.clock.now(), w.clock.now());
    const legacyStandard = await insertRequest(w.storage, { agent_name: 'ci', created_at: w.clock.now() });
    const standardBody = JSON.stringify({ type: 'jit.request.denied', id: 'evt_legacy1111111111111111111', request_id: legacyStandard.id });
    w.db
      .prepare(`INSERT INTO webhook_outbox (id, request_id, type, target, url, url_source, session_key, body, state, attempts, next_attempt_at, created_at, updated_at)
        VALUES ('evt_legacy1111111111111111111', ?, 'jit.request.denied', 'standard', ?, 'policy', NULL, ?, 'pending', 0, ?, ?, ?)`)
      .run(legacyStandard.id, `${w.standard.url}/events`, standardBody, w.clock.now(), w.clock.now(), w.clock.now());

    expect(await w.dispatcher().drainOnce()).toEqual({ delivered: 2, retried: 0, dead: 0 });
    expect(w.openclaw.requests[0]!.body).toBe(legacyBody);
    expect(w.openclaw.requests[0]!.headers.authorization).toBe(`Bearer ${HOOKS_TOKEN}`);
    expect(w.openclaw.requests[0]!.verification.ok).toBe(true);
    expect(w.standard.requests[0]!.body).toBe(standardBody);
  });
});
