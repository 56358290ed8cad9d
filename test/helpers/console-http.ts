import { afterAll, beforeAll, expect } from 'vitest';
import type { PublicKeyCredentialCreationOptionsJSON } from '@simplewebauthn/server';
import { addApprover } from '../../src/broker/approvers.ts';
import { startHarness, type Harness } from './broker-harness.ts';
import { SoftAuthenticator } from './soft-authenticator.ts';

/**
 * The operator console over real HTTP, as a browser drives it: the broker
 * in-process on a real listener (the broker harness, the development Vault
 * behind it), requests with the session cookie and the console's Origin,
 * enrolment with a software authenticator the broker verifies for real.
 */

/** The public URL the console runs under in these tests, and so the Origin its POSTs carry. */
export const CONSOLE_PUBLIC_URL = 'http://localhost:8787';
export const CONSOLE_ORIGIN = CONSOLE_PUBLIC_URL;

export interface Console {
  h: Harness;
  /** The token of the agent `moltbot`. */
  agent: string;
}

/** A broker with the console on (JIT_PUBLIC_URL set) and one agent, moltbot. */
export async function startConsole(env: Record<string, string> = {}): Promise<Console> {
  const h = await startHarness({ env: { JIT_PUBLIC_URL: CONSOLE_PUBLIC_URL, ...env } });
  return { h, agent: await h.addAgent('moltbot') };
}

/**
 * A console for the enclosing describe: started before its tests (then
 * `ready` runs: enrol the describe's approvers there), stopped after them.
 */
export function useConsole(ready: (k: Console) => void | Promise<void>, env: Record<string, string> = {}): void {
  let k: Console | undefined;
  beforeAll(async () => {
    k = await startConsole(env);
    await ready(k);
  });
  afterAll(() => k?.h.close());
}

export interface SendInit {
  /** The session cookie's value (sent as jit_console=…). */
  cookie?: string;
  headers?: Record<string, string>;
  body?: string | URLSearchParams;
  /** text/html unless told. */
  accept?: string;
}

/** A request as a browser would make it, redirects not followed. */
export function send(k: Console, method: string, path: string, init: SendInit = {}): Promise<Response> {
  return fetch(`${k.h.broker.url}${path}`, {
    method,
    redirect: 'manual',
    headers: { accept: init.accept ?? 'text/html', ...(init.cookie ? { cookie: `jit_console=${init.cookie}` } : {}), ...init.headers },
    ...(init.body !== undefined ? { body: init.body } : {}),
  });
}

/** A ceremony fetch: JSON in (a string body is sent as it is, for malformed JSON), JSON out, with the console's Origin. */
export async function postJson<T>(k: Console, path: string, body?: unknown, cookie?: string, headers: Record<string, string> = {}): Promise<{ res: Response; json: T }> {
  const res = await send(k, 'POST', path, {
    accept: 'application/json',
    ...(cookie ? { cookie } : {}),
    headers: { origin: CONSOLE_ORIGIN, ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...headers },
    ...(body !== undefined ? { body: typeof body === 'string' ? body : JSON.stringify(body) } : {}),
  });
  return { res, json: (await res.json()) as T };
}

/** The session cookie an answer sets: its value, and its attributes (HttpOnly, SameSite...). */
export function sessionCookie(res: Response): { value: string; attributes: string } {
  const header = res.headers.get('set-cookie') ?? '';
  const m = /^jit_console=([^;]+);(.*)$/.exec(header);
  if (!m) throw new Error(`no session cookie in ${JSON.stringify(header)}`);
  return { value: m[1]!, attributes: m[2]! };
}

export interface Enrolled {
  /** The session cookie's value. */
  cookie: string;
  /** The session cookie's attributes. */
  attributes: string;
  /** The authenticator holding the passkey. */
  auth: SoftAuthenticator;
  /** The enrolment token (its link's last segment). */
  token: string;
  /** What the finish fetch answered. */
  finished: { ok: boolean; location?: string };
}

/**
 * Registers a passkey through the enrolment link of a new approver, over
 * HTTP: the session cookie that starts, and the authenticator holding the
 * passkey. `openLink` first loads the enrolment page, as a browser following
 * the link does (and asserts it answers 200); `finishesAt` asserts the finish
 * fetch answers { ok: true, location: finishesAt }.
 */
export async function enrol(k: Console, name: string, o: { openLink?: boolean; finishesAt?: string } = {}): Promise<Enrolled> {
  const { token } = await addApprover(k.h.broker.deps, { name });
  const auth = new SoftAuthenticator({ origin: CONSOLE_ORIGIN });
  if (o.openLink) expect((await send(k, 'GET', `/console/enrol/${token}`)).status).toBe(200);
  const options = await postJson<PublicKeyCredentialCreationOptionsJSON>(k, `/console/enrol/${token}/options`);
  expect(options.res.status).toBe(200);
  const finish = await postJson<{ ok: boolean; location?: string }>(k, `/console/enrol/${token}/finish`, auth.register(options.json));
  expect(finish.res.status, JSON.stringify(finish.json)).toBe(200);
  if (o.finishesAt !== undefined) expect(finish.json).toEqual({ ok: true, location: o.finishesAt });
  const { value, attributes } = sessionCookie(finish.res);
  return { cookie: value, attributes, auth, token, finished: finish.json };
}

/** The CSRF token of a session, from the console's home page. */
export async function csrfOf(k: Console, cookie: string): Promise<string> {
  const page = await (await send(k, 'GET', '/console', { cookie })).text();
  const m = /<meta name="csrf-token" content="([^"]+)">/.exec(page);
  if (!m) throw new Error('no CSRF token on the page');
  return m[1]!;
}

export type SignedIn = Enrolled & { csrf: string };

/** `enrol`, then the CSRF token of the session that starts: an approver ready to post forms. */
export async function signedIn(k: Console, name: string, o: Parameters<typeof enrol>[2] = {}): Promise<SignedIn> {
  const enrolled = await enrol(k, name, o);
  return { ...enrolled, csrf: await csrfOf(k, enrolled.cookie) };
}

/** The reason a pending request carries unless told: agent-written text the pages must escape. */
export const EVIL_REASON = 'rotate <script>alert(1)</script> \u202Ekeys';

/** A pending tier-2 Vault request by moltbot (202), its id; `body` overrides the defaults. */
export async function pending(k: Console, body: Record<string, unknown> = {}): Promise<string> {
  const res = await k.h.call('POST', '/jit/request', {
    token: k.agent,
    body: { resource: 'vault', tier: 2, reason: EVIL_REASON, vault_paths: [{ path: 'homelab/data/apps/web', capabilities: ['read', 'update'] }], ttl: '15m', ...body },
  });
  expect(res.status, JSON.stringify(res.body)).toBe(202);
  return res.body.id as string;
}

/** A request's status as the database holds it. */
export const statusOf = async (k: Console, id: string) => (await k.h.broker.deps.storage.requests.get(id))!.status;

/** Form fields as a browser posts them (a repeated field as an array). */
export function form(fields: Record<string, string | string[]>): URLSearchParams {
  const body = new URLSearchParams();
  for (const [key, v] of Object.entries(fields)) for (const one of Array.isArray(v) ? v : [v]) body.append(key, one);
  return body;
}

/** Posts the decision form of a request with the console's Origin (`headers` may override it). */
export function decide(k: Console, id: string, cookie: string, fields: Record<string, string | string[]>, o: { accept?: string; headers?: Record<string, string> } = {}): Promise<Response> {
  return send(k, 'POST', `/console/requests/${id}/decision`, { cookie, body: form(fields), headers: { origin: CONSOLE_ORIGIN, ...o.headers }, ...(o.accept ? { accept: o.accept } : {}) });
}
