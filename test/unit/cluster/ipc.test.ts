import { describe, expect, it } from 'vitest';
import { createRpc, isIpcMessage, type IpcMessage } from '../../../src/cluster/ipc.ts';

/** Two ends of a channel, delivering asynchronously like process.send. */
function pair(handlersA: Record<string, (arg: unknown) => unknown>, handlersB: Record<string, (arg: unknown) => unknown>, timeoutMs = 1_000) {
  const a: ReturnType<typeof createRpc> = createRpc((m: IpcMessage) => void setImmediate(() => b.receive(m)), handlersA, timeoutMs);
  const b: ReturnType<typeof createRpc> = createRpc((m: IpcMessage) => void setImmediate(() => a.receive(m)), handlersB, timeoutMs);
  return { a, b };
}

describe('cluster IPC calls', () => {
  it('answers a call with the handler value, in either direction', async () => {
    const { a, b } = pair({ double: (n) => (n as number) * 2 }, { hello: async (name) => `hello ${name as string}` });
    await expect(a.call('hello', 'primary')).resolves.toBe('hello primary');
    await expect(b.call('double', 21)).resolves.toBe(42);
  });

  it('rejects with the handler error and for an unknown operation', async () => {
    const { a } = pair({}, { boom: () => { throw new Error('it broke'); } });
    await expect(a.call('boom')).rejects.toThrow('it broke');
    await expect(a.call('nope')).rejects.toThrow('unknown operation "nope"');
  });

  it('times out when nobody answers, and failAll ends the calls still waiting', async () => {
    const silent = createRpc(() => {}, {}, 50);
    await expect(silent.call('metrics')).rejects.toThrow(/no answer to "metrics" within 50 ms/);
    const waiting = createRpc(() => {}, {}, 10_000);
    const p = waiting.call('metrics');
    waiting.failAll('the worker exited');
    await expect(p).rejects.toThrow('the worker exited');
  });

  it('ignores messages that are not its own', () => {
    expect(isIpcMessage({ t: 'jit:outbox' })).toBe(true);
    expect(isIpcMessage({ t: 'other' })).toBe(false);
    expect(isIpcMessage('jit:outbox')).toBe(false);
    expect(createRpc(() => {}, {}).receive({ t: 'jit:kick' })).toBe(false);
  });
});
