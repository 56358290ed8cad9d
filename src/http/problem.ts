import type { Context } from 'hono';
import { BrokerError, ERROR_CODES, type ErrorCode } from '../broker/errors.ts';

/** The problem+json body for an error code (RFC 9457). */
export function problemBody(code: ErrorCode, detail: string, extra: Record<string, unknown> = {}) {
  const { status, title } = ERROR_CODES[code];
  return {
    type: `urn:jit-broker:problem:${code.toLowerCase().replaceAll('_', '-')}`,
    title,
    status,
    detail,
    code,
    ...extra,
  };
}

export function problemResponse(c: Context, err: BrokerError): Response {
  const headers: Record<string, string> = { 'content-type': 'application/problem+json' };
  if (err.extra.retryAfterSeconds !== undefined) headers['retry-after'] = String(err.extra.retryAfterSeconds);
  if (err.status === 401) headers['www-authenticate'] = 'Bearer realm="jit-broker"';
  const requestId = c.get('requestId' as never) as string | undefined;
  const body = problemBody(err.code, err.message, { ...(err.extra.fields ?? {}), ...(requestId ? { request_id: requestId } : {}) });
  return new Response(JSON.stringify(body), { status: err.status, headers });
}
