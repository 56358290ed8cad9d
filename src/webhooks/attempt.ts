import type { Config } from '../config/config.ts';
import type { Clock } from '../lib/clock.ts';
import { scrubSecrets, type Logger } from '../lib/logger.ts';
import type { KeyRing } from '../keys/key-ring.ts';
import { hooksTokenOrigin, resolveTargetUrl, type OutboxRow } from './outbox.ts';
import { renderEventBody, type EventFacts } from './payloads.ts';
import { nextAttemptDelay, parseRetryAfter } from './retry.ts';
import { signWebhook } from './sign.ts';
import type { Transport, TransportResponse } from './transport.ts';

/**
 * Statuses from OpenClaw that retrying cannot fix (SPEC §8): a bad payload
 * or session policy (400), a bad token (401/403), no hooks endpoint at that
 * URL (404/405), gone (410), or too large (413). Dead at once, loudly.
 */
export const OPENCLAW_CONFIG_ERRORS: ReadonlySet<number> = new Set([400, 401, 403, 404, 405, 410, 413]);

type TokenUse = 'sent' | 'unset' | 'other_origin';

function openClawHint(status: number, token: TokenUse): string {
  switch (status) {
    case 400:
      return 'OpenClaw rejected the payload: set hooks.allowRequestSessionKey to true, make hooks.allowedSessionKeyPrefixes cover the session key, and check agent_id names an existing agent';
    case 401:
    case 403:
      if (token === 'other_origin') {
        return "no token was sent: this policy webhook URL's origin differs from OPENCLAW_HOOKS_URL, and OPENCLAW_HOOKS_TOKEN goes only to that origin; point the agent's webhook at the configured OpenClaw (or leave `webhook: openclaw`)";
      }
      return token === 'sent' ? 'OpenClaw rejected the token: OPENCLAW_HOOKS_TOKEN must equal hooks.token' : 'OPENCLAW_HOOKS_TOKEN is not set; set it to hooks.token';
    case 404:
    case 405:
      return 'no OpenClaw hooks endpoint there: check OPENCLAW_HOOKS_URL (e.g. http://127.0.0.1:18789/hooks) and hooks.enabled / hooks.path';
    case 410:
      return 'the receiver says the endpoint is gone';
    default:
      return 'the payload is too large for OpenClaw';
  }
}

/** What one attempt came to, waiting to be committed. */
export interface Settled {
  row: OutboxRow;
  /** Where it was sent (null: no target), as resolved for the attempt. */
  url: string | null;
  outcome: 'delivered' | 'retried' | 'dead';
  status: number | null;
  error?: string;
  reason: string;
  nextAttemptAt?: number;
}

/** An attempt cut short by the dispatcher stopping: the row's lease is to be released (due again at once). */
export const RELEASED = 'released';

export interface AttemptDeps {
  clock: Clock;
  log: Logger;
  keyRing: Pick<KeyRing, 'current'>;
  /** The OpenClaw URL and token, and JIT_PUBLIC_URL for the claim call, are the service's, applied at delivery. */
  config: Pick<Config, 'openclaw' | 'publicUrl'>;
  transport: Transport;
  timeoutMs: number;
  schedule: readonly number[];
  jitter?: number;
  random?: () => number;
}

/**
 * One delivery attempt of a leased row: resolves its target, renders and
 * signs the body, sends it through the transport under a per-attempt
 * timeout, and classifies the answer (delivered, retry later, dead). Touches
 * no database: the caller commits the result (or releases the lease on
 * {@link RELEASED}).
 */
export type Attempt = (row: OutboxRow, stop: AbortSignal) => Promise<Settled | typeof RELEASED>;

export function createAttempt(deps: AttemptDeps): Attempt {
  const { clock, log, keyRing, config, transport, timeoutMs, schedule } = deps;
  const hooksToken = config.openclaw?.hooksToken;
  const hooksOrigin = hooksTokenOrigin(config);
  /** Whether the OpenClaw hooks token may go to `url`: see {@link hooksTokenOrigin}. */
  const mayCarryHooksToken = (url: string): boolean => {
    if (hooksOrigin === undefined) return false;
    try {
      return new URL(url).origin === hooksOrigin;
    } catch {
      return false;
    }
  };

  if (config.openclaw && !hooksToken) {
    log.warn('OPENCLAW_HOOKS_URL is set but OPENCLAW_HOOKS_TOKEN is not; OpenClaw will answer 401 and events will be dead-lettered');
  }

  /** Removes anything secret-shaped from receiver-supplied text before it is stored or logged. */
  function clean(text: string): string {
    let t = scrubSecrets(text.replace(/\s+/g, ' ').trim());
    if (hooksToken) t = t.split(hooksToken).join('[redacted]');
    return t.length > 300 ? `${t.slice(0, 300)}…` : t;
  }

  function failed(row: OutboxRow, url: string, status: number | null, error: string, reason: string, retryAfterMs?: number): Settled {
    const delay = nextAttemptDelay({ attempt: row.attempts, schedule, ...(deps.jitter !== undefined ? { jitter: deps.jitter } : {}), ...(deps.random ? { random: deps.random } : {}), retryAfterMs });
    if (delay === undefined) {
      return { row, url, outcome: 'dead', status, error: `gave up after ${row.attempts} attempts; last: ${error}`, reason: 'exhausted' };
    }
    return { row, url, outcome: 'retried', status, error, reason, nextAttemptAt: clock.now() + delay };
  }

  return async function attempt(row, stop) {
    // Target, token and body are the service's, decided now: whoever wrote the row (the service, or
    // `jit approve` in a shell with other settings) wrote only the event's facts.
    const target = resolveTargetUrl(row, config);
    if (target.url === undefined || row.target === 'unresolved') return { row, url: null, outcome: 'dead', status: null, error: target.problem ?? 'no target', reason: 'not_configured' };
    const url = target.url;
    let body: string;
    try {
      body = row.body_format === 'facts' ? renderEventBody(JSON.parse(row.body) as EventFacts, row.target, config.publicUrl) : row.body;
    } catch (err) {
      return { row, url, outcome: 'dead', status: null, error: `the stored event does not render: ${clean((err as Error).message)}`, reason: 'bad_event' };
    }
    let headers: Record<string, string>;
    try {
      headers = {
        'content-type': 'application/json',
        'user-agent': 'jit-broker',
        ...signWebhook(keyRing.current(), { id: row.id, timestamp: Math.floor(clock.now() / 1000), body }),
      };
    } catch (err) {
      log.error({ err, event_id: row.id }, 'could not sign decision webhook');
      return failed(row, url, null, `signing failed: ${clean((err as Error).message)}`, 'signing');
    }
    let token: TokenUse = 'unset';
    if (row.target === 'openclaw') {
      if (mayCarryHooksToken(url)) {
        headers.authorization = `Bearer ${hooksToken}`;
        token = 'sent';
      } else if (hooksToken) {
        token = 'other_origin';
      }
      // OpenClaw replays an admitted run for a repeated key instead of starting a second one.
      headers['idempotency-key'] = row.id;
    }

    // Stopped before it was sent (the dispatcher claimed the row while stopping): nothing goes out, the lease is given back.
    if (stop.aborted) return RELEASED;
    // One controller per attempt, aborted by a plain timer or by `stop`. Not
    // AbortSignal.any/AbortSignal.timeout: on Node 20 a composed signal can be garbage
    // collected before it fires, leaving a hung receiver holding its slot forever.
    const controller = new AbortController();
    let abortedBy: 'timeout' | 'stop' | undefined;
    const abort = (by: 'timeout' | 'stop', reason: unknown) => {
      abortedBy ??= by;
      controller.abort(reason);
    };
    const onStop = () => abort('stop', stop.reason);
    const timer = setTimeout(() => abort('timeout', new Error(`no response within ${timeoutMs} ms`)), timeoutMs);
    stop.addEventListener('abort', onStop, { once: true });
    if (stop.aborted) onStop();
    let res: TransportResponse;
    try {
      res = await untilAborted(transport({ url, method: 'POST', headers, body, signal: controller.signal }), controller.signal);
    } catch (err) {
      // Classified by who aborted (recorded above), never by the error's text.
      if (abortedBy === 'stop') return RELEASED;
      if (abortedBy === 'timeout') return failed(row, url, null, `no response within ${timeoutMs} ms`, 'timeout');
      const cause = (err as Error & { cause?: Error }).cause;
      return failed(row, url, null, `network error: ${clean(cause?.message ?? (err as Error).message)}`, 'network');
    } finally {
      clearTimeout(timer);
      stop.removeEventListener('abort', onStop);
    }

    const status = res.status;
    if (status >= 200 && status < 300) return { row, url, outcome: 'delivered', status, reason: 'ok' };
    const error = `HTTP ${status}${res.body ? `: ${clean(res.body)}` : ''}`;
    if (row.target === 'openclaw' && OPENCLAW_CONFIG_ERRORS.has(status)) {
      return { row, url, outcome: 'dead', status, error: `${error} — ${openClawHint(status, token)}`, reason: 'configuration' };
    }
    if (status === 410) return { row, url, outcome: 'dead', status, error: `${error} — the receiver says the endpoint is gone`, reason: 'gone' };
    return failed(row, url, status, error, `http_${status}`, parseRetryAfter(res.headers.get('retry-after'), clock.now()));
  };
}

/** Settles with the promise, or rejects as soon as `signal` aborts (a transport that ignores its signal cannot hang a worker). */
function untilAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    // Listened to in every case, so a transport that fails after the abort never leaves an unhandled rejection.
    promise.then(
      (v) => (signal.removeEventListener('abort', onAbort), resolve(v)),
      (e) => (signal.removeEventListener('abort', onAbort), reject(e)),
    );
    if (signal.aborted) return reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
