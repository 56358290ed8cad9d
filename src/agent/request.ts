import { CredentialRequestBody, describeZodError } from '../wire/schemas.ts';
import type { JitClient } from '../client/jit-client.ts';
import type { CredentialRequestInput, IssuedResult, RequestResult, RequestView } from '../client/types.ts';
import { parseDurationSeconds } from '../lib/duration.ts';
import type { CliIo } from '../lib/cli-io.ts';
import { UsageError, parseCommandArgs } from '../lib/cli-args.ts';
import { describeDecision, describeScope } from '../client/describe.ts';
import { EXIT, envLines, formatArg, printIssued, withClient } from './common.ts';

const USAGE = `jit request vault (--path PATH:CAPS | --path PATH --cap CAPS)... --tier 1|2|3 --reason TEXT [common options]
       jit request gate --repo REPO --ref REF [--ref REF]... --tier 1|2|3 --reason TEXT [common options]

  --path PATH:CAPS        a Vault path and its capabilities, e.g. homelab/data/apps/web:read,update
  --path PATH --cap CAPS  the same as two flags; the Nth --cap goes with the Nth --path that has no :CAPS
                          (one --cap alone applies to all of them). Repeat for more paths.
  --repo REPO --ref REF   a git repository and the refs to push (repeat --ref)
  --tier N                the tier you ask for; policy may raise it (never lowers it)
  --reason TEXT           why, shown to the approver
Common options
  --ttl DURATION          credential lifetime, e.g. 90s, 15m, 1h (policy may shorten it)
  --session KEY           session key the decision webhook goes to
  --wait                  follow the request's decision stream until it is decided (no polling;
                          the decision, and the granted scope if narrowed, on stderr)
  --wait-timeout DURATION give up waiting after this long (default 10m)
  --claim                 wait (implies --wait), then claim the credential as soon as it is approved
  --idempotency-key KEY   retrying with the same key never creates a second request
  --format env|json       stdout: export lines (default) or the broker's JSON

stdout: export JIT_REQUEST_ID=… and JIT_REQUEST_STATUS=…, plus VAULT_TOKEN=… (or
JIT_GATE_CREDENTIAL=…) when a credential was issued (tier 1 at once, or --claim).
Exit 0 when the request is pending, approved or issued (with --wait: approved or
issued), 1 on an API error or any other outcome, 2 on bad usage, 3 when the broker
cannot be reached.

Environment
  JIT_URL          the broker (default http://127.0.0.1:8787)
  JIT_AGENT_TOKEN  the agent token "jit agent add NAME" printed (required)`;

const OPTIONS = {
  path: { type: 'string', multiple: true },
  cap: { type: 'string', multiple: true },
  repo: { type: 'string' },
  ref: { type: 'string', multiple: true },
  tier: { type: 'string' },
  reason: { type: 'string' },
  ttl: { type: 'string' },
  session: { type: 'string' },
  wait: { type: 'boolean' },
  'wait-timeout': { type: 'string' },
  claim: { type: 'boolean' },
  'idempotency-key': { type: 'string' },
  format: { type: 'string' },
} as const;

type Values = Record<string, string | boolean | string[] | undefined>;

/** `jit request vault|gate …`: asks the broker for a credential over HTTP (agent side). */
export async function requestCommand(args: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseCommandArgs(args, OPTIONS, 'jit request vault|gate … (jit request --help)');
  if (values.help) return (io.out(`usage: ${USAGE}`), EXIT.ok);
  const body = requestBody(positionals, values);
  const format = formatArg(values.format, ['env', 'json'] as const, 'env');
  const claim = values.claim === true;
  const wait = values.wait === true || claim;
  const waitTimeoutMs = waitTimeout(values['wait-timeout'], wait);
  const key = values['idempotency-key'] as string | undefined;

  return withClient('request', io, async (client) => {
    const result = await client.request(body, key !== undefined ? { idempotencyKey: key } : {});
    if (!('replayed' in result) && result.status === 'issued') {
      io.err(`Issued ${result.id} at once (tier ${result.required_tier}); valid until ${result.expires_at}. The secret is shown only this once.`);
      printIssued(io, result, format);
      return EXIT.ok;
    }
    if ('replayed' in result) io.err(`Idempotency-Key seen before: this is request ${result.id} as it stands now (no secret is replayed).`);
    if (result.status === 'pending') io.err(pendingMessage(result, wait));
    if (!wait) {
      printState(io, result, format);
      return ['pending', 'approved', 'issued'].includes(result.status) ? EXIT.ok : EXIT.apiError;
    }
    const decided = result.status === 'pending' ? await waitFor(client, io, 'request', result.id, waitTimeoutMs) : (result as RequestView);
    return finish(client, io, decided, { claim, format });
  });
}

/** Builds the body from flags and checks it with the broker's own schema, so bad input is a usage error (exit 2). */
export function requestBody(positionals: string[], values: Values): CredentialRequestInput {
  const [resource, ...extra] = positionals;
  if (resource !== 'vault' && resource !== 'gate') {
    throw new UsageError(`${resource ? `unknown resource "${resource}"` : 'missing resource'}: use "jit request vault …" or "jit request gate …"\nusage: ${USAGE}`);
  }
  if (extra.length > 0) throw new UsageError(`unexpected argument "${extra[0]}" (quote a --reason with spaces)\nusage: ${USAGE}`);
  const notFor = (flags: string[]) => {
    const used = flags.filter((f) => values[f] !== undefined);
    if (used.length > 0) throw new UsageError(`--${used[0]} does not apply to "jit request ${resource}"`);
  };
  if (values.tier === undefined) throw new UsageError(`--tier is required (1, 2 or 3; ask for the lowest that fits, the broker raises it if policy needs)`);
  if (values.reason === undefined) throw new UsageError('--reason is required: say why, the approver reads it');
  const common = {
    tier: /^\d$/.test(values.tier as string) ? Number(values.tier) : values.tier,
    reason: values.reason as string,
    ...(values.ttl !== undefined ? { ttl: values.ttl as string } : {}),
    ...(values.session !== undefined ? { session_key: values.session as string } : {}),
  };
  let body: unknown;
  if (resource === 'vault') {
    notFor(['repo', 'ref']);
    body = { resource, ...common, vault_paths: vaultPaths((values.path as string[] | undefined) ?? [], (values.cap as string[] | undefined) ?? []) };
  } else {
    notFor(['path', 'cap']);
    if (values.repo === undefined) throw new UsageError('--repo is required for a gate request');
    if (values.ref === undefined) throw new UsageError('at least one --ref is required for a gate request');
    body = { resource, ...common, repo: values.repo, refs: values.ref };
  }
  const parsed = CredentialRequestBody.safeParse(body);
  if (!parsed.success) throw new UsageError(describeZodError(parsed.error));
  return body as CredentialRequestInput;
}

const INLINE_CAPS = /^(.+):([a-z]+(?:,[a-z]+)*)$/;

/**
 * Pairs paths with capabilities: `--path P:read,update`, or `--path P --cap
 * read,update` where the Nth --cap goes with the Nth path that has no :CAPS
 * (a single --cap applies to all of them).
 */
export function vaultPaths(paths: string[], caps: string[]): { path: string; capabilities: string[] }[] {
  if (paths.length === 0) throw new UsageError('name at least one --path (e.g. --path homelab/data/apps/web:read,update)');
  const bare = paths.filter((p) => !INLINE_CAPS.test(p));
  if (bare.length === 0 && caps.length > 0) throw new UsageError('--cap given, but every --path already names its capabilities as PATH:CAPS');
  if (bare.length > 0 && caps.length !== bare.length && caps.length !== 1) {
    throw new UsageError(
      `${bare.length} --path without :CAPS but ${caps.length} --cap; give one --cap per such path, in the same order, or one --cap for all (or write --path PATH:CAPS)`,
    );
  }
  const split = (c: string) => c.split(',').map((s) => s.trim()).filter(Boolean);
  let next = 0;
  return paths.map((p) => {
    const m = INLINE_CAPS.exec(p);
    if (m) return { path: m[1]!, capabilities: split(m[2]!) };
    const c = caps.length === 1 ? caps[0]! : caps[next++]!;
    return { path: p, capabilities: split(c) };
  });
}

function pendingMessage(p: { id: string; tier: number; required_tier: number; approval_expires_at?: string | null }, wait: boolean): string {
  const raised = p.required_tier !== p.tier ? `; you asked for tier ${p.tier}, policy requires ${p.required_tier}` : '';
  const who = p.required_tier >= 3 ? 'a quorum of approvers' : 'an approver';
  const until = p.approval_expires_at ? ` until ${p.approval_expires_at}` : '';
  const next = wait ? 'Waiting for the decision…' : `You get a decision webhook, or check with: jit status ${p.id}. Once approved: jit claim ${p.id}`;
  return `Request ${p.id} is pending (tier ${p.required_tier}${raised}): ${who} must approve it${until}. ${next}`;
}

/**
 * Follows the request's decision stream (JitClient.waitForDecision) and
 * prints, on stderr, the decision as it arrives. `name` is the command, for
 * its progress lines.
 */
export async function waitFor(client: JitClient, io: CliIo, name: string, id: string, timeoutMs: number): Promise<RequestView> {
  const view = await client.waitForDecision(id, {
    timeoutMs,
    onProgress: (p) => {
      if (p.kind === 'heartbeat') io.err(`jit ${name}: ${id} still pending after ${Math.round(p.elapsedMs / 1000)} s`);
      else if (p.kind === 'reconnecting') io.err(`jit ${name}: the decision stream dropped; reconnecting in ${(p.retryInMs! / 1000).toFixed(1)} s (attempt ${p.attempt})`);
    },
  });
  io.err(`Request ${view.id} ${describeDecision(view)}.`);
  return view;
}

/** --wait-timeout (default 10 min), checked. */
export function waitTimeout(raw: unknown, wait: boolean): number {
  if (raw === undefined) return 600_000;
  if (!wait) throw new UsageError('--wait-timeout needs --wait');
  const s = parseDurationSeconds(raw as string);
  if (s === undefined) throw new UsageError('--wait-timeout must be a duration like 90s, 10m, 1h');
  return s * 1000;
}

async function finish(client: JitClient, io: CliIo, view: RequestView, opts: { claim: boolean; format: 'env' | 'json' }): Promise<number> {
  switch (view.status) {
    case 'approved': {
      if (!opts.claim) {
        io.err(`Claim it${view.claim_expires_at ? ` before ${view.claim_expires_at}` : ''}: jit claim ${view.id}`);
        printState(io, view, opts.format);
        return EXIT.ok;
      }
      const issued: IssuedResult = await client.claim(view.id);
      io.err(`Claimed ${view.id}. Valid until ${issued.expires_at}.`);
      printIssued(io, issued, opts.format);
      return EXIT.ok;
    }
    case 'issued':
      io.err(`Request ${view.id} is already issued (${describeScope(view)}); its secret was returned once and cannot be shown again.`);
      printState(io, view, opts.format);
      return EXIT.ok;
    default:
      io.err(`jit request: request ${view.id} ended ${view.status}${view.failure ? `: ${view.failure}` : ''}; no credential.`);
      printState(io, view, opts.format);
      return EXIT.apiError;
  }
}

function printState(io: CliIo, result: RequestResult | RequestView, format: 'env' | 'json'): void {
  if (format === 'json') io.out(JSON.stringify(result, null, 2));
  else for (const line of envLines({ JIT_REQUEST_ID: result.id, JIT_REQUEST_STATUS: result.status })) io.out(line);
}
