import { closeSync, fstatSync, mkdirSync, openSync, readFileSync, readSync, renameSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { verifyGateJwt } from '../../broker/gate-jwt.ts';
import { formatDuration, parseDurationSeconds } from '../../lib/duration.ts';
import { inertText, isPrintableAsciiWord } from '../../lib/inert-text.ts';
import type { Jwks, OkpJwk } from '../../keys/key-ring.ts';
import { UsageError, parseCommandArgs } from '../../lib/cli-args.ts';
import { requestJson } from '../http-json.ts';
import type { CliIo } from '../../lib/cli-io.ts';

const USAGE = 'jit gate verify --credential C|- --repo R --ref REF   (env: JIT_URL, JIT_GATE_OFFLINE_WINDOW, JIT_JWKS_CACHE)';

/** The longest offline window an operator may set: past a day, a revoked credential or key would be trusted too long. */
const MAX_GATE_OFFLINE_WINDOW_SECONDS = 86_400;
/** How long one call to the broker may take before it counts as unreachable. */
const BROKER_TIMEOUT_MS = 5_000;
/** A gate credential is a few hundred bytes; more on stdin is not one. */
const MAX_CREDENTIAL_BYTES = 8192;
/** The most of a broker answer read: a verdict or a JWKS is a few hundred bytes. */
const MAX_ANSWER_BYTES = 1 << 20;

/** What the command prints of a verdict (the broker's answer carries the `jti` too). */
type Verdict = { valid: true; agent: string; request_id: string; expires_at: string } | { valid: false; reason: string };

/**
 * For a git pre-receive hook: exit 0 when the credential allows pushing REF
 * to REPO, 1 otherwise (the reason on stderr), 2 for wrong use or a bad
 * setting.
 *
 * It asks the broker (`POST /gate/verify`), which checks the signature, the
 * stored grant and revocation. When the broker cannot be asked it fails
 * closed, unless the operator set JIT_GATE_OFFLINE_WINDOW: then a JWKS
 * cached from the broker at most that long ago verifies the signature,
 * expiry, repo and ref, with a warning that revocation and the stored grant
 * could not be checked.
 *
 * A hook runs it on every push, so it loads no package: node:http (not
 * fetch, whose undici is compiled on first use), the JWT checks (gate-jwt.ts:
 * no HTTP server, database, Vault or Telegram code) and, instead of zod,
 * the explicit checks of the broker's answers and the cache below.
 * test/integration/gate/gate-module-graph.test.ts keeps it that way.
 */
export async function gateCommand(args: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseCommandArgs(args, { credential: { type: 'string' }, repo: { type: 'string' }, ref: { type: 'string' } }, USAGE);
  if (values.help) return (io.out(`usage: ${USAGE}`), 0);
  if (positionals[0] !== 'verify' || positionals.length > 1) throw new UsageError(`usage: ${USAGE}`);
  const repo = values.repo as string | undefined;
  const ref = values.ref as string | undefined;
  if (!values.credential || !repo || !ref) throw new UsageError(`--credential, --repo and --ref are all required\nusage: ${USAGE}`);
  // Same alphabet as POST /gate/verify: git hands the hook what the pusher named, so say no here
  // (shown inertly) rather than pass control characters on.
  for (const [name, value] of [['repo', repo], ['ref', ref]] as const) {
    if (!isPrintableAsciiWord(value)) {
      io.err(`invalid: --${name} must be printable ASCII without spaces (got "${inertText(value)}")`);
      return 1;
    }
  }
  // `--credential -`: read it from stdin, so it is not on a command line other users of the host can see.
  const credential = values.credential === '-' ? readCredentialFromStdin() : (values.credential as string);

  const baseUrl = (io.env.JIT_URL ?? 'http://127.0.0.1:8787').replace(/\/+$/, '');
  if (!/^https?:\/\//.test(baseUrl)) throw new UsageError('JIT_URL must be an http(s) URL');
  const windowSeconds = offlineWindow(io.env.JIT_GATE_OFFLINE_WINDOW);
  const cachePath = io.env.JIT_JWKS_CACHE ?? join(io.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'jit-broker', 'jwks.json');

  let verdict: Verdict;
  try {
    verdict = await verifyOnline(baseUrl, { credential, repo, ref }, windowSeconds ? cachePath : undefined);
  } catch (err) {
    const unreachable = `broker unreachable at ${baseUrl} (${describeRequestError(err)})`;
    if (!windowSeconds) {
      io.err(`invalid: ${unreachable}; refusing, since offline verification is off (set JIT_GATE_OFFLINE_WINDOW, e.g. 15m, to allow it against a recently cached JWKS)`);
      return 1;
    }
    const cache = readCache(cachePath, windowSeconds);
    if (!cache.ok) {
      io.err(`invalid: ${unreachable}, and ${cache.why}`);
      return 1;
    }
    verdict = verifyGateJwt(cache.jwks, credential, repo, ref, Date.now());
    if (verdict.valid) {
      io.err(`warning: ${unreachable}; verified offline against the JWKS cached ${formatDuration(Math.max(1, cache.ageSeconds))} ago; revocation and the stored grant could not be checked`);
    }
  }
  // Offline, a reason can quote the pusher's token (its header's "alg"), and JSON does not escape
  // bidi overrides or C1 controls: everything printed from a verdict is made inert.
  if (!verdict.valid) {
    io.err(`invalid: ${inertText(verdict.reason)}`);
    return 1;
  }
  io.out(`valid: agent ${inertText(verdict.agent)}, request ${inertText(verdict.request_id)}, expires ${inertText(verdict.expires_at)}`);
  return 0;
}

/** "ECONNREFUSED", "no answer within 5 s", "it answered 503". */
function describeRequestError(err: unknown): string {
  const e = err as Error & { code?: unknown };
  if (e.name === 'TimeoutError') return `no answer within ${BROKER_TIMEOUT_MS / 1000} s`;
  return typeof e.code === 'string' ? e.code : e.message;
}

/** JIT_GATE_OFFLINE_WINDOW: unset, empty or 0 = off (fail closed); else a duration of at most a day. */
function offlineWindow(value: string | undefined): number | undefined {
  if (value === undefined || value.trim() === '' || value.trim() === '0') return undefined;
  const seconds = parseDurationSeconds(value);
  if (seconds === undefined || seconds > MAX_GATE_OFFLINE_WINDOW_SECONDS) {
    throw new UsageError(`JIT_GATE_OFFLINE_WINDOW must be a duration of at most ${formatDuration(MAX_GATE_OFFLINE_WINDOW_SECONDS)} (e.g. 15m), or 0 for none`);
  }
  return seconds;
}

function readCredentialFromStdin(): string {
  const buf = Buffer.alloc(MAX_CREDENTIAL_BYTES + 1);
  let length = 0;
  for (;;) {
    let n: number;
    try {
      n = readSync(0, buf, length, buf.length - length, null);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EAGAIN') continue;
      if ((err as NodeJS.ErrnoException).code === 'EOF') break;
      throw err;
    }
    if (n === 0) break;
    length += n;
    if (length > MAX_CREDENTIAL_BYTES) throw new UsageError(`--credential -: more than ${MAX_CREDENTIAL_BYTES} bytes on stdin`);
  }
  const credential = buf.subarray(0, length).toString('utf8').trim();
  if (!credential) throw new UsageError('--credential -: nothing on stdin');
  return credential;
}

/**
 * Asks the broker. Throws when it cannot be asked (network, timeout, 5xx);
 * a 4xx is the broker's answer (invalid, with its detail). With `cachePath`
 * (an offline window is set) the JWKS is fetched first and cached.
 */
async function verifyOnline(baseUrl: string, body: { credential: string; repo: string; ref: string }, cachePath: string | undefined): Promise<Verdict> {
  const signal = AbortSignal.timeout(BROKER_TIMEOUT_MS);
  if (cachePath) {
    const jwksRes = await requestJson(`${baseUrl}/.well-known/jwks.json`, { method: 'GET', signal, maxBytes: MAX_ANSWER_BYTES });
    if (jwksRes.status >= 200 && jwksRes.status < 300) {
      const jwks = parseJwks(jwksRes.json);
      if (jwks) writeCache(cachePath, jwks);
    }
  }
  const res = await requestJson(`${baseUrl}/gate/verify`, { method: 'POST', body: JSON.stringify(body), signal, maxBytes: MAX_ANSWER_BYTES });
  if (res.status >= 500) throw new Error(`it answered ${res.status}`);
  const verdict = parseVerdict(res.json);
  if (verdict) return verdict;
  if (res.status >= 300 && res.status < 400) {
    return { valid: false, reason: `broker answered ${res.status}, a redirect, which jit does not follow (set JIT_URL to the broker's own address)` };
  }
  const detail = isRecord(res.json) && typeof res.json.detail === 'string' ? res.json.detail : undefined;
  return { valid: false, reason: `broker answered ${res.status}${detail !== undefined ? `: ${inertText(detail)}` : ' with an unexpected body'}` };
}

/*
 * The broker's answers and the cache file, checked field by field (what zod
 * did here before, without its load time). As before, fields not named are
 * ignored and left out of the result; a named field of the wrong type or
 * value rejects the whole.
 */

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** `{valid: true, agent, request_id, expires_at}` or `{valid: false, reason}`, all strings. */
function parseVerdict(json: unknown): Verdict | undefined {
  if (!isRecord(json)) return undefined;
  const { valid, agent, request_id, expires_at, reason } = json;
  if (valid === true && typeof agent === 'string' && typeof request_id === 'string' && typeof expires_at === 'string') {
    return { valid, agent, request_id, expires_at };
  }
  if (valid === false && typeof reason === 'string') return { valid, reason };
  return undefined;
}

/** `{keys: [...]}`, every key an Ed25519 signing key (`kty` OKP, `crv` Ed25519, `use` sig, `alg` EdDSA, string `x` and `kid`). */
function parseJwks(json: unknown): Jwks | undefined {
  if (!isRecord(json) || !Array.isArray(json.keys)) return undefined;
  const keys: OkpJwk[] = [];
  for (const k of json.keys as unknown[]) {
    if (!isRecord(k) || k.kty !== 'OKP' || k.crv !== 'Ed25519' || k.use !== 'sig' || k.alg !== 'EdDSA' || typeof k.x !== 'string' || typeof k.kid !== 'string') return undefined;
    keys.push({ kty: k.kty, crv: k.crv, x: k.x, kid: k.kid, use: k.use, alg: k.alg });
  }
  return { keys };
}

/** The cache file: the JWKS and when it was fetched from the broker (the offline window counts from then). */
function parseCache(json: unknown): (Jwks & { fetched_at: string }) | undefined {
  const jwks = parseJwks(json);
  if (!jwks || !isRecord(json) || !isIsoUtcDateTime(json.fetched_at)) return undefined;
  return { ...jwks, fetched_at: json.fetched_at };
}

/**
 * An ISO 8601 UTC date-time as toISOString writes it, seconds required,
 * fractions optional (`2026-12-07T02:14:13.123Z`), of a day that exists.
 */
function isIsoUtcDateTime(value: unknown): value is string {
  if (typeof value !== 'string' || !/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?Z$/.test(value)) return false;
  const ms = Date.parse(value);
  // Date.parse accepts 24:00 and rolls over some impossible days; the round trip does not.
  return !Number.isNaN(ms) && new Date(ms).toISOString().slice(0, 19) === value.slice(0, 19);
}

type CacheRead = { ok: true; jwks: Jwks; ageSeconds: number } | { ok: false; why: string };

/**
 * The cached JWKS, if it is fit to verify with: ours alone to write (anyone
 * who can write it could add a key of their own) and fetched within the
 * offline window.
 */
function readCache(path: string, windowSeconds: number): CacheRead {
  let text: string;
  try {
    const fd = openSync(path, 'r');
    try {
      const st = fstatSync(fd);
      if ((st.mode & 0o022) !== 0 || (typeof process.getuid === 'function' && st.uid !== process.getuid())) {
        return { ok: false, why: `the cached JWKS at ${path} is writable by others or not owned by this user; not trusted` };
      }
      text = readFileSync(fd, 'utf8');
    } finally {
      closeSync(fd);
    }
  } catch {
    return { ok: false, why: `no cached JWKS at ${path}` };
  }
  let parsed;
  try {
    parsed = parseCache(JSON.parse(text));
  } catch {
    parsed = undefined;
  }
  if (!parsed) return { ok: false, why: `the cached JWKS at ${path} is unreadable (or from an older jit without a fetch time)` };
  const ageSeconds = Math.floor((Date.now() - Date.parse(parsed.fetched_at)) / 1000);
  if (ageSeconds > windowSeconds || ageSeconds < -60) {
    return { ok: false, why: `the cached JWKS at ${path} was fetched at ${parsed.fetched_at}, older than the offline window (${formatDuration(windowSeconds)})` };
  }
  return { ok: true, jwks: { keys: parsed.keys }, ageSeconds };
}

function writeCache(path: string, jwks: Jwks): void {
  try {
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    const tmp = `${path}.${process.pid}.tmp`;
    writeFileSync(tmp, JSON.stringify({ ...jwks, fetched_at: new Date().toISOString() }), { mode: 0o600 });
    renameSync(tmp, path);
  } catch {
    // A read-only cache only costs the offline window.
  }
}
