import { performance } from 'node:perf_hooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser } from 'playwright-core';
import { launchBrowser, newContext } from '../helpers/browser.ts';
import { startConsoleBroker, type ConsoleBroker } from '../helpers/console-broker.ts';
import { enrol, type Person } from '../helpers/console-page.ts';

/**
 * Step-up in a real browser (SPEC §12, JIT_PASSKEY_TIER=3): approving a
 * tier-3 request needs a fresh passkey assertion made inside the Approve
 * action and bound to it. Two console approvers each assert and reach the
 * quorum; a missing assertion (no passkey on the device, or no JavaScript)
 * and a wrong one (another person's passkey over the right challenge) are
 * refused and change nothing. Deny needs no step-up.
 */
let browser: Browser;
let cb: ConsoleBroker;
let agent: string;
let alice: Person;
let bob: Person;
let carol: Person;
const figures: Record<string, unknown> = {};

const TIER3 = { resource: 'vault', tier: 3, reason: 'delete the retired prod database password', vault_paths: [{ path: 'homelab/data/prod/db', capabilities: ['delete'] }] };
const status = async (id: string) => (await cb.broker.deps.storage.requests.get(id))?.status;
const votes = (id: string) => cb.broker.deps.storage.votes.of(id);

beforeAll(async () => {
  [browser, cb] = await Promise.all([launchBrowser(), startConsoleBroker({ env: { JIT_PASSKEY_TIER: '3' } })]);
  agent = await cb.addAgent('moltbot');
  alice = await enrol(browser, await cb.addApprover('alice'));
  bob = await enrol(browser, await cb.addApprover('bob'));
  carol = await enrol(browser, await cb.addApprover('carol'));
}, 120_000);

afterAll(async () => {
  for (const p of [alice, bob, carol]) await p?.close();
  await browser?.close();
  await cb?.close();
  if (Object.keys(figures).length) console.log(`console step-up figures: ${JSON.stringify(figures, null, 2)}`);
});

/** Opens the request's page and clicks Approve; answers the time until `outcome` shows. */
async function approve(person: Person, id: string, outcome: RegExp): Promise<number> {
  await person.page.goto(`${cb.url}/console/requests/${id}`);
  const t0 = performance.now();
  await person.page.getByRole('button', { name: 'Approve', exact: true }).click();
  await person.page.getByText(outcome).first().waitFor();
  return Math.round(performance.now() - t0);
}

const signCount = async (p: Person) => (await p.auth.credentials())[0]?.signCount ?? 0;

describe('step-up with JIT_PASSKEY_TIER=3', () => {
  it('reaches a tier-3 quorum of two console approvers, each asserting a passkey inside Approve', async () => {
    const id = await cb.request(agent, TIER3);
    const [a0, b0] = [await signCount(alice), await signCount(bob)];
    figures.decideMsStepUpFirstVote = await approve(alice, id, /1 of 2 approvals/);
    expect(await status(id)).toBe('pending');
    figures.decideMsStepUpQuorum = await approve(bob, id, /^Approved: the agent can now claim/);
    expect(await status(id)).toBe('approved');
    // Each Approve made one assertion of that person's passkey.
    expect(await signCount(alice)).toBeGreaterThan(a0);
    expect(await signCount(bob)).toBeGreaterThan(b0);
    expect((await votes(id)).map((v) => v.approver)).toHaveLength(2);
  }, 60_000);

  it('refuses an approval without an assertion: no passkey on the device, or no JavaScript', async () => {
    const id = await cb.request(agent, TIER3);
    // The device has lost its passkey: the ceremony fails in the browser and nothing is counted.
    const saved = carol.passkeys;
    await carol.auth.replace();
    try {
      await carol.page.goto(`${cb.url}/console/requests/${id}`);
      await carol.page.getByRole('button', { name: 'Approve', exact: true }).click();
      await carol.page.getByText(/^Not sent:/).waitFor();
    } finally {
      await carol.auth.replace(saved);
    }
    expect(await status(id)).toBe('pending');
    expect(await votes(id)).toEqual([]);

    // Without JavaScript the form posts no assertion: refused with a clear message, nothing changed.
    const nojs = await newContext(browser, { javaScriptEnabled: false, storageState: await carol.context.storageState() });
    try {
      const page = await nojs.newPage();
      await page.goto(`${cb.url}/console/requests/${id}`);
      await page.getByRole('button', { name: 'Approve', exact: true }).click();
      await page.getByRole('alert').filter({ hasText: /^Refused:/ }).waitFor();
    } finally {
      await nojs.close();
    }
    expect(await status(id)).toBe('pending');
    expect(await votes(id)).toEqual([]);
  }, 60_000);

  it('refuses another person\'s passkey over the right challenge (allowCredentials stripped on the wire)', async () => {
    const id = await cb.request(agent, TIER3);
    const page = carol.page;
    const saved = carol.passkeys;
    // Carol's device holds Alice's passkey only, and the step-up options are altered so the browser will use it.
    await carol.auth.replace(await alice.auth.credentials());
    await page.route('**/console/requests/*/step-up', async (route) => {
      const res = await route.fetch();
      const json = (await res.json()) as Record<string, any>;
      delete json.allowCredentials;
      if (json.options) delete json.options.allowCredentials;
      await route.fulfill({ response: res, json });
    });
    try {
      const before = (await alice.auth.credentials())[0]!.signCount;
      await page.goto(`${cb.url}/console/requests/${id}`);
      await page.getByRole('button', { name: 'Approve', exact: true }).click();
      await page.getByRole('alert').filter({ hasText: /^Refused:/ }).waitFor();
      // The assertion was made (with Alice's key) and refused.
      expect((await carol.auth.credentials())[0]!.signCount).toBeGreaterThan(before);
    } finally {
      await page.unroute('**/console/requests/*/step-up');
      await carol.auth.replace(saved);
    }
    expect(await status(id)).toBe('pending');
    expect(await votes(id)).toEqual([]);
  }, 60_000);

  it('revokes all live credentials after a passkey assertion made inside "Revoke all"', async () => {
    const id = await cb.request(agent, { resource: 'vault', tier: 2, reason: 'read the web key', vault_paths: [{ path: 'homelab/data/apps/web', capabilities: ['read'] }] });
    // Tier 2 is below JIT_PASSKEY_TIER: no step-up to approve it.
    await approve(alice, id, /^Approved: the agent can now claim/);
    expect((await fetch(`${cb.broker.url}/jit/requests/${id}/claim`, { method: 'POST', headers: { authorization: `Bearer ${agent}` } })).status).toBe(201);
    const before = await signCount(alice);
    await alice.page.goto(`${cb.url}/console/credentials`);
    await alice.page.getByRole('button', { name: 'Revoke all', exact: true }).click();
    await alice.page.getByText(/^Revoke all: [1-9]\d* revoked/).waitFor();
    expect(await signCount(alice)).toBeGreaterThan(before);
    expect(await status(id)).toBe('revoked');
  }, 60_000);

  it('denies a tier-3 request without step-up, with a reason', async () => {
    const id = await cb.request(agent, TIER3);
    const page = carol.page;
    await carol.auth.remove();
    await page.goto(`${cb.url}/console/requests/${id}`);
    await page.getByRole('textbox', { name: /reason/i }).fill('not during the freeze');
    await page.getByRole('button', { name: 'Deny', exact: true }).click();
    await page.getByText(/^Denied\./).waitFor();
    expect(await status(id)).toBe('denied');
  }, 60_000);
});
