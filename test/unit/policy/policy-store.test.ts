import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { evaluateVault } from '../../../src/broker/policy/evaluate.ts';
import { PolicyStore } from '../../../src/broker/policy/policy-store.ts';
import { policyDir, removePolicyDirs, writeFiles } from './helpers.ts';

afterAll(removePolicyDirs);

const policyWithTtl = (ttl: string) => `
agents:
  moltbot: {sessions: ["hook:jit:moltbot:*"]}
rules:
  - {name: read, agents: [moltbot], resource: vault, paths: ["kv/data/*"], capabilities: [read], tier: 1, max_ttl: ${ttl}}
`;

const read = (store: PolicyStore) =>
  evaluateVault(store.current(), 'moltbot', [{ path: 'kv/data/app', capabilities: ['read'] }]);

describe('PolicyStore', () => {
  it('has no policy until one is loaded', () => {
    const store = new PolicyStore();
    expect(store.loaded).toBe(false);
    expect(() => store.current()).toThrow('no policy loaded');
  });

  it('a failed first load leaves it without a policy', () => {
    const store = new PolicyStore();
    const result = store.reload(policyDir({ 'p.yaml': 'rules: [' }));
    expect(result.ok).toBe(false);
    expect(store.loaded).toBe(false);
  });

  it('keeps the old policy when a reload finds a bad file, and takes the fixed one', () => {
    const dir = policyDir({ 'p.yaml': policyWithTtl('10m') });
    const store = new PolicyStore();
    expect(store.reload(dir)).toEqual({ ok: true, warnings: [] });
    const first = store.current();
    expect(read(store)).toMatchObject({ ok: true, ttlSeconds: 600 });

    writeFiles(dir, { 'p.yaml': policyWithTtl('10m').replace('[read]', '[read, sudo]') });
    const bad = store.reload(dir);
    expect(bad).toEqual({
      ok: false,
      problems: [
        {
          file: join(dir, 'p.yaml'),
          rule: 'read',
          field: 'capabilities[1]',
          message: '"sudo" is never issued',
          line: 5,
        },
      ],
    });
    expect(store.current()).toBe(first);
    expect(read(store)).toMatchObject({ ok: true, ttlSeconds: 600 });

    writeFiles(dir, { 'p.yaml': policyWithTtl('5m') });
    expect(store.reload(dir).ok).toBe(true);
    expect(store.current()).not.toBe(first);
    expect(read(store)).toMatchObject({ ok: true, ttlSeconds: 300 });
  });

  it('keeps the old policy when the directory disappears or empties', () => {
    const dir = policyDir({ 'p.yaml': policyWithTtl('10m') });
    const store = new PolicyStore();
    store.reload(dir);
    const first = store.current();

    rmSync(join(dir, 'p.yaml'));
    expect(store.reload(dir)).toMatchObject({ ok: false, problems: [{ message: 'no policy files (*.yaml or *.yml) in this directory' }] });
    rmSync(dir, { recursive: true });
    expect(store.reload(dir)).toMatchObject({ ok: false, problems: [{ message: 'policy directory does not exist' }] });
    expect(store.current()).toBe(first);
  });

  it('can start from a given policy and passes warnings on', () => {
    const store = new PolicyStore({ agents: new Map(), rules: [], deny: [], files: [] });
    expect(store.loaded).toBe(true);
    const result = store.reload(policyDir({ 'p.yaml': 'agents:\n  a: {sessions: []}\n' }));
    expect(result).toMatchObject({ ok: true, warnings: [{ message: 'no rules: every request will be rejected' }] });
  });
});
