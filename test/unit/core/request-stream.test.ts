import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BrokerError } from '../../../src/broker/errors.ts';
import { approve } from '../../../src/broker/request-machine.ts';
import { createRequestStreams, type RequestStreams, type StreamSink } from '../../../src/broker/request-stream.ts';
import { createStorageDeps, type StorageDeps } from '../../../src/create-deps.ts';
import { ManualClock } from '../../../src/lib/clock.ts';
import { openSqliteStorage } from '../../../src/storage/sqlite/index.ts';
import type { Storage } from '../../../src/storage/storage.ts';
import type { RequestStreamEvent } from '../../../src/wire/events.ts';
import { captureLogger, insertRequest, testConfig } from '../webhooks/helpers.ts';

/**
 * The stream hub's bounds, on a real (in-memory SQLite) database with the
 * request machine writing the audit entries: a reader that stops taking
 * writes is closed and its slot freed, the cap counts per agent, and
 * shutdown ends every stream. The audit poll is an hour here: what arrives
 * comes through the commit hook's wake.
 */

const agent = { id: 'agt_x', name: 'moltbot' };
let storage: Storage;
let deps: StorageDeps;
let hub: RequestStreams;
const clock = new ManualClock(Date.UTC(2026, 0, 1));

beforeEach(() => {
  storage = openSqliteStorage(':memory:');
  hub = createRequestStreams({ storage, log: captureLogger().log, maxPerAgent: 2, pollMs: 3_600_000, heartbeatMs: 20, stallMs: 100 });
  deps = createStorageDeps({ config: testConfig(), storage, clock, onAuditCommit: () => hub.wake() });
});
afterEach(async () => {
  await hub.close();
  await storage.close();
});

const pending = () => insertRequest(storage, { status: 'pending' });
const approveIt = (id: string) =>
  storage.transaction((tx) => approve(deps, tx, id, clock.now(), { decidedBy: 'local-cli', actor: 'local-cli', data: {}, claimExpiresAt: clock.now() + 60_000 }));

/** Resolves once `pred` holds (checked every few ms; the test's timeout is the only bound). */
function until(pred: () => boolean): Promise<void> {
  return new Promise((resolve) => {
    const check = () => (pred() ? resolve() : setTimeout(check, 5));
    check();
  });
}

/** A sink that takes every write at once and keeps what it got. */
function collecting() {
  const events: RequestStreamEvent[] = [];
  let heartbeats = 0;
  const sink: StreamSink = {
    event: async (e) => void events.push(e),
    heartbeat: async () => void heartbeats++,
  };
  return { sink, events, heartbeats: () => heartbeats };
}

describe('request streams hub', () => {
  it("delivers this process's commit through the wake, after the current state", async () => {
    const row = await pending();
    const stream = await hub.open(agent, row, undefined);
    const c = collecting();
    const ran = stream.run(c.sink);
    await approveIt(row.id);
    await until(() => c.events.length >= 2);
    stream.close();
    await ran;
    // A pending request inserted without its created entry: its state as it stands first, then the approval by seq.
    expect(c.events.map((e) => e.data.status)).toEqual(['pending', 'approved']);
  });

  it('takes a Last-Event-ID past the end of the log (from another database) as none: the current state first, then the changes', async () => {
    const row = await pending();
    const beyond = ((await storage.audit.last())?.seq ?? 0) + 1_000;
    const stream = await hub.open(agent, row, beyond);
    const c = collecting();
    const ran = stream.run(c.sink);
    await until(() => c.events.length >= 1);
    expect(c.events[0]!.data.status).toBe('pending');
    await approveIt(row.id);
    await until(() => c.events.length >= 2);
    stream.close();
    await ran;
    expect(c.events.map((e) => e.data.status)).toEqual(['pending', 'approved']);
  });

  it('closes a stream whose reader stops taking writes, and frees its slot', async () => {
    const row = await pending();
    const stream = await hub.open(agent, row, undefined);
    let writes = 0;
    // The connection never takes the first write (a client that stopped reading with full socket buffers).
    let dropped = 0;
    const stalled: StreamSink = { event: () => (writes++, new Promise(() => {})), heartbeat: () => new Promise(() => {}), drop: () => void dropped++ };
    const ran = stream.run(stalled);
    expect(hub.openCount(agent.id)).toBe(1);
    await approveIt(row.id); // queued behind the stalled write, never written
    await ran; // ends: the stall was noticed by the heartbeat timer
    expect(hub.openCount()).toBe(0);
    expect(writes).toBe(1);
    // Its connection is cut, not drained behind the unread bytes.
    expect(dropped).toBe(1);
  });

  it('caps open streams per agent and refuses opening after shutdown; shutdown ends every run', async () => {
    const rows = [await pending(), await pending(), await pending()];
    const a = await hub.open(agent, rows[0]!, undefined);
    const b = await hub.open(agent, rows[1]!, undefined);
    const err = await hub.open(agent, rows[2]!, undefined).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BrokerError);
    expect((err as BrokerError).code).toBe('TOO_MANY_STREAMS');
    // Another agent has its own count.
    const other = await hub.open({ id: 'agt_y', name: 'other' }, rows[2]!, undefined);
    const runs = [a, b, other].map((s) => s.run(collecting().sink));
    await hub.close();
    await Promise.all(runs);
    expect(hub.openCount()).toBe(0);
    const late = await hub.open(agent, rows[0]!, undefined).catch((e: unknown) => e);
    expect((late as BrokerError).code).toBe('UNAVAILABLE');
  });

  it('sends heartbeats on the one shared timer while idle', async () => {
    const rows = [await pending(), await pending()];
    const sinks = [collecting(), collecting()];
    const streams = await Promise.all(rows.map((r) => hub.open(agent, r, undefined)));
    const runs = streams.map((s, i) => s.run(sinks[i]!.sink));
    await until(() => sinks.every((s) => s.heartbeats() >= 2));
    for (const s of streams) s.close();
    await Promise.all(runs);
    expect(sinks.map((s) => s.events.length)).toEqual([1, 1]);
  });
});
