import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { z } from 'zod';
import { verifyGateJwt, type GateVerdict } from '../../broker/gate-credential.ts';
import type { CliIo } from '../io.ts';
import { UsageError, parseCommandArgs } from '../main.ts';

const USAGE = 'jit gate verify --credential C --repo R --ref REF   (env: JIT_URL, JIT_JWKS_CACHE)';

const JwksSchema = z.object({
  keys: z.array(z.object({ kty: z.literal('OKP'), crv: z.literal('Ed25519'), x: z.string(), kid: z.string(), use: z.literal('sig'), alg: z.literal('EdDSA') })),
});
const VerdictSchema = z.union([
  z.object({ valid: z.literal(true), agent: z.string(), request_id: z.string(), expires_at: z.string() }),
  z.object({ valid: z.literal(false), reason: z.string() }),
]);

/**
 * For a git pre-receive hook: exit 0 when the credential allows pushing REF
 * to REPO, 1 otherwise (the reason on stderr). Online it asks the broker,
 * which also checks revocation, and refreshes a cached JWKS; when the broker
 * is unreachable it verifies offline against that cache and says that
 * revocation could not be checked.
 */
export async function gateCommand(args: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseCommandArgs(args, { credential: { type: 'string' }, repo: { type: 'string' }, ref: { type: 'string' } }, USAGE);
  if (values.help) return (io.out(`usage: ${USAGE}`), 0);
  if (positionals[0] !== 'verify' || positionals.length > 1) throw new UsageError(`usage: ${USAGE}`);
  const credential = values.credential as string | undefined;
  const repo = values.repo as string | undefined;
  const ref = values.ref as string | undefined;
  if (!credential || !repo || !ref) throw new UsageError(`--credential, --repo and --ref are all required\nusage: ${USAGE}`);

  const baseUrl = (io.env.JIT_URL ?? 'http://127.0.0.1:8787').replace(/\/+$/, '');
  if (!/^https?:\/\//.test(baseUrl)) throw new UsageError('JIT_URL must be an http(s) URL');
  const cachePath = io.env.JIT_JWKS_CACHE ?? join(io.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'jit-broker', 'jwks.json');

  let verdict: GateVerdict;
  try {
    verdict = await verifyOnline(baseUrl, cachePath, { credential, repo, ref });
  } catch (err) {
    const jwks = readCache(cachePath);
    if (!jwks) {
      io.err(`invalid: broker unreachable at ${baseUrl} (${(err as Error).message}) and no cached JWKS at ${cachePath}`);
      return 1;
    }
    io.err(`warning: broker unreachable at ${baseUrl}; verified offline against the cached JWKS; revocation could not be checked`);
    verdict = verifyGateJwt(jwks, credential, repo, ref, Date.now());
  }
  if (!verdict.valid) {
    io.err(`invalid: ${verdict.reason}`);
    return 1;
  }
  io.out(`valid: agent ${verdict.agent}, request ${verdict.request_id}, expires ${verdict.expires_at}`);
  return 0;
}

async function verifyOnline(baseUrl: string, cachePath: string, body: { credential: string; repo: string; ref: string }): Promise<GateVerdict> {
  const signal = AbortSignal.timeout(5000);
  const jwksRes = await fetch(`${baseUrl}/.well-known/jwks.json`, { signal });
  if (jwksRes.ok) {
    const jwks = JwksSchema.safeParse(await jwksRes.json());
    if (jwks.success) writeCache(cachePath, jwks.data);
  }
  const res = await fetch(`${baseUrl}/gate/verify`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body), signal });
  if (res.status >= 500) throw new Error(`broker answered ${res.status}`);
  const parsed = VerdictSchema.safeParse(await res.json().catch(() => null));
  if (!parsed.success) return { valid: false, reason: `broker answered ${res.status} with an unexpected body` };
  return parsed.data as GateVerdict;
}

function readCache(path: string): z.infer<typeof JwksSchema> | undefined {
  try {
    const parsed = JwksSchema.safeParse(JSON.parse(readFileSync(path, 'utf8')));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}

function writeCache(path: string, jwks: z.infer<typeof JwksSchema>): void {
  try {
    mkdirSync(dirname(path), { recursive: true });
    const tmp = `${path}.${process.pid}.tmp`;
    writeFileSync(tmp, JSON.stringify(jwks));
    renameSync(tmp, path);
  } catch {
    // A read-only cache only costs the offline fallback.
  }
}
