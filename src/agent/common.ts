import { ClientConfigError, jitClientFromEnv } from '../client/env.ts';
import { JitApiError, JitStreamLostError, JitUnreachableError, JitWaitTimeoutError } from '../client/errors.ts';
import type { JitClient } from '../client/jit-client.ts';
import type { Credential, IssuedResult } from '../client/types.ts';
import { isId } from '../lib/ids.ts';
import type { CliIo } from '../lib/cli-io.ts';
import { UsageError } from '../lib/cli-args.ts';

/** Exit codes of the agent-side commands. */
export const EXIT = { ok: 0, apiError: 1, usage: 2, unreachable: 3 } as const;

/**
 * Runs an agent-side command with a client built from `JIT_URL` and
 * `JIT_AGENT_TOKEN`, and turns client errors into exit codes: 1 for an
 * error the broker answered (its title and detail on stderr), 2 for a bad
 * environment, 3 when the broker cannot be reached (or its decision stream
 * could not be followed). These commands talk
 * HTTP only; they never open the database.
 */
export async function withClient(name: string, io: CliIo, run: (client: JitClient) => Promise<number>): Promise<number> {
  let client: JitClient;
  try {
    client = jitClientFromEnv(io.env);
  } catch (err) {
    if (err instanceof ClientConfigError) {
      io.err(`jit ${name}: ${err.message}`);
      return EXIT.usage;
    }
    throw err;
  }
  try {
    return await run(client);
  } catch (err) {
    if (err instanceof UsageError) throw err;
    if (err instanceof JitUnreachableError) {
      io.err(`jit ${name}: ${err.message}`);
      return EXIT.unreachable;
    }
    if (err instanceof JitApiError) {
      io.err(`jit ${name}: ${describeApiError(err)}`);
      return EXIT.apiError;
    }
    if (err instanceof JitStreamLostError) {
      const cause = err.cause instanceof Error ? ` (${err.cause.message})` : '';
      io.err(`jit ${name}: ${err.message}${cause}. Wait again with: jit status ${err.requestId} --wait`);
      return EXIT.unreachable;
    }
    if (err instanceof JitWaitTimeoutError) {
      io.err(`jit ${name}: ${err.message}; it may still be decided. Check with: jit status ${err.requestId}`);
      return EXIT.apiError;
    }
    throw err;
  }
}

/** `Denied by policy: … (403 DENIED_BY_POLICY); retry after 30 s`. */
export function describeApiError(err: JitApiError): string {
  const retry = err.retryAfterSeconds !== undefined ? `; retry after ${err.retryAfterSeconds} s` : '';
  return `${err.message} (${err.status} ${err.code})${retry}`;
}

/** Checks a request id argument (they look like req_…). */
export function requestIdArg(positionals: string[], usage: string): string {
  const [id, ...extra] = positionals;
  if (!id) throw new UsageError(`missing request ID\nusage: ${usage}`);
  if (extra.length > 0) throw new UsageError(`unexpected argument "${extra[0]}"\nusage: ${usage}`);
  if (!isId('req', id)) throw new UsageError(`"${id.slice(0, 80)}" is not a request id (they look like req_…)`);
  return id;
}

/** One of the allowed `--format` values, or the default. */
export function formatArg<F extends string>(value: unknown, allowed: readonly F[], fallback: F): F {
  if (value === undefined) return fallback;
  if (!allowed.includes(value as F)) throw new UsageError(`--format must be one of ${allowed.join(', ')}`);
  return value as F;
}

/** Quotes a value for a POSIX shell `eval`. */
export function shellQuote(value: string): string {
  return /^[A-Za-z0-9_./:@%+=,-]+$/.test(value) ? value : `'${value.replaceAll("'", `'\\''`)}'`;
}

/** `export NAME=value` lines a shell can `eval`. */
export function envLines(vars: Record<string, string | undefined>): string[] {
  return Object.entries(vars)
    .filter((e): e is [string, string] => e[1] !== undefined)
    .map(([k, v]) => `export ${k}=${shellQuote(v)}`);
}

/** The variables for a credential: VAULT_TOKEN… for Vault, JIT_GATE_CREDENTIAL… for the git gate. */
export function credentialVars(credential: Credential): Record<string, string> {
  if (credential.type === 'vault_token') {
    return { VAULT_TOKEN: credential.token, VAULT_TOKEN_ACCESSOR: credential.accessor, JIT_CREDENTIAL_EXPIRES_AT: credential.expires_at };
  }
  return { JIT_GATE_CREDENTIAL: credential.credential, JIT_GATE_JTI: credential.jti, JIT_CREDENTIAL_EXPIRES_AT: credential.expires_at };
}

/** Prints an issued credential in env or JSON form, on stdout only. */
export function printIssued(io: CliIo, issued: IssuedResult, format: 'env' | 'json'): void {
  if (format === 'json') io.out(JSON.stringify(issued, null, 2));
  else for (const line of envLines({ JIT_REQUEST_ID: issued.id, JIT_REQUEST_STATUS: issued.status, ...credentialVars(issued.credential) })) io.out(line);
}
