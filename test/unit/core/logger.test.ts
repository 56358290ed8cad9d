import { describe, expect, it } from 'vitest';
import { captureLogger } from '../../helpers/log-capture.ts';

const vaultToken = 'hvs.CAESIJx7b3Jvb3RfdG9rZW5fZm9yX3Rlc3Rz';
const agentToken = 'jit_0123456789abcdef_Zm9vYmFyYmF6cXV4cXV1eHF1dXhxdXV4cXV1eHF1dXg';
const jwt = 'eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJtb2x0Ym90In0.c2lnbmF0dXJlc2lnbmF0dXJl';

describe('log redaction', () => {
  it('redacts secret-bearing fields at any common depth', () => {
    const { log, text } = captureLogger('trace');
    log.info({ token: vaultToken, issued: { token: vaultToken, accessor: 'acc-1' }, req: { headers: { authorization: `Bearer ${agentToken}` } } }, 'issued');
    log.info({ body: { secret_id: 'approle-secret-xyz', password: 'hunter2' } }, 'login');
    const out = text();
    for (const s of [vaultToken, agentToken, 'approle-secret-xyz', 'hunter2']) expect(out).not.toContain(s);
    expect(out).toContain('acc-1');
    expect(out).toContain('[redacted]');
  });

  it('scrubs token shapes out of free text, messages and errors', () => {
    const { log, text } = captureLogger('trace');
    log.warn(`upstream said: bad token ${vaultToken}`);
    log.error({ err: new Error(`refused ${agentToken} and ${jwt}`) }, 'failed');
    log.info({ note: `header was Bearer ${agentToken}` });
    const out = text();
    for (const s of [vaultToken, agentToken, jwt]) expect(out).not.toContain(s);
    expect(out.match(/\[redacted\]/g)?.length).toBeGreaterThanOrEqual(4);
  });
});
