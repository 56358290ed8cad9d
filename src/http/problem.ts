import type { Context } from 'hono';
import type { BrokerError } from '../broker/errors.ts';
import { problemBody } from '../wire/error-codes.ts';

export function problemResponse(c: Context, err: BrokerError): Response {
  const headers: Record<string, string> = { 'content-type': 'application/problem+json' };
  if (err.extra.retryAfterSeconds !== undefined) headers['retry-after'] = String(err.extra.retryAfterSeconds);
  if (err.status === 401) headers['www-authenticate'] = 'Bearer realm="jit-broker"';
  const requestId = c.get('requestId' as never) as string | undefined;
  const body = problemBody(err.code, err.message, { ...(err.extra.fields ?? {}), ...(requestId ? { request_id: requestId } : {}) });
  return new Response(JSON.stringify(body), { status: err.status, headers });
}
