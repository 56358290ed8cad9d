import { describe, expect, it } from 'vitest';
import type { RequestRow } from '../../../src/broker/repository.ts';
import { escapeHtml, visibleLength } from '../../../src/telegram/html.ts';
import { callbackData, parseCallbackData, renderApproval, type ApprovalView } from '../../../src/telegram/render.ts';
import { parseTelegramHtml } from '../../fakes/telegram-emulator/parse-html.ts';

const T0 = Date.UTC(2026, 0, 1, 10, 0, 0);
const ID = 'req_01jabcdefghjkmnpqrstvwxyz0';

function row(over: Partial<RequestRow> = {}): RequestRow {
  return {
    id: ID,
    agent_id: 'agt_x',
    agent_name: 'moltbot',
    resource: 'vault',
    tier: 2,
    required_tier: 2,
    status: 'pending',
    reason: 'rotate the key',
    scope: JSON.stringify({ vault_paths: [{ path: 'homelab/data/apps/web', capabilities: ['read', 'update'] }] }),
    ttl_seconds: 1800,
    session_key: 'hook:jit:moltbot',
    rules: '["homelab-write"]',
    idempotency_key: null,
    body_hash: null,
    created_at: T0,
    updated_at: T0,
    approval_expires_at: T0 + 600_000,
    claim_expires_at: null,
    decided_by: null,
    decided_at: null,
    decision_reason: null,
    failure: null,
    ...over,
  };
}

const view = (over: Partial<RequestRow> = {}, extra: Partial<ApprovalView> = {}): ApprovalView => ({ request: row(over), votes: [], quorum: 1, ...extra });

/** What Telegram would display: parses like the Bot API does, failing the test on bad HTML. */
function shown(html: string): string {
  const r = parseTelegramHtml(html);
  if (!r.ok) throw new Error(r.error);
  return r.text;
}

describe('callback data', () => {
  it('is short, prefixed, and round-trips; anything else is rejected', () => {
    expect(callbackData('approve', ID)).toBe(`a:${ID}`);
    expect(Buffer.byteLength(callbackData('deny', ID))).toBe(32);
    expect(parseCallbackData(`d:${ID}`)).toEqual({ decision: 'deny', requestId: ID });
    for (const bad of ['', 'a:', `x:${ID}`, `a:${ID}x`, `a:req_${'A'.repeat(26)}`, `a:${ID}\n`]) expect(parseCallbackData(bad)).toBeUndefined();
  });
});

describe('renderApproval', () => {
  it('escapes everything the agent or a user supplied', () => {
    const evil = '<a href="https://evil">click</a> & <b>';
    const r = renderApproval(
      view(
        { reason: evil, agent_name: 'a<b', session_key: '</code><i>', scope: JSON.stringify({ vault_paths: [{ path: 'x/<y>&z', capabilities: ['read'] }] }), rules: '["r<1>"]', status: 'denied', decided_by: 'telegram:1', decided_at: T0, decision_reason: '<pre>' },
        { names: new Map([['telegram:1', '<Eve & co>']]) },
      ),
    );
    const text = shown(r.html);
    expect(text).toContain(`Reason: ${evil}`);
    expect(text).toContain('Agent: a<b');
    expect(text).toContain('Session: </code><i>');
    expect(text).toContain('• x/<y>&z: read');
    expect(text).toContain('Policy rules: r<1>');
    expect(text).toContain('DENIED by <Eve & co> (telegram:1)');
    expect(text).toContain('Why: <pre>');
    const parsed = parseTelegramHtml(r.html);
    expect(parsed.ok && parsed.entities.some((e) => e.type === 'text_link')).toBe(false);
  });

  it('pending: Approve / Deny buttons; decided: none, outcome first', () => {
    expect(renderApproval(view()).keyboard).toEqual([
      [{ text: '✅ Approve', callback_data: `a:${ID}` }, { text: '❌ Deny', callback_data: `d:${ID}` }],
      [{ text: '✂️ Narrow…', callback_data: `n:${ID}` }],
    ]);
    const approved = renderApproval(view({ status: 'approved', decided_by: 'telegram:1, telegram:2', decided_at: T0 + 5000, claim_expires_at: T0 + 605_000 }, { names: new Map([['telegram:1', 'Alice']]) }));
    expect(approved.keyboard).toEqual([]);
    expect(approved.final).toBe(false);
    const lines = shown(approved.html).split('\n');
    expect(lines[0]).toBe('✅ APPROVED by Alice (telegram:1), telegram:2 at 2026-01-01 10:00:05 UTC');
    expect(lines[1]).toBe('⏳ Waiting for the agent to claim it (until 2026-01-01 10:10:05 UTC).');
    expect(lines).toContain(`Request: ${ID}`);
  });

  it.each([
    ['denied', { decided_by: 'local-cli', decided_at: T0 }, /^❌ DENIED by local-cli at 2026-01-01 10:00:00 UTC/],
    ['timed_out', { decided_by: 'timeout', decided_at: T0 + 600_000 }, /^⌛ TIMED OUT at 2026-01-01 10:10:00 UTC: no decision/],
    ['expired', { decided_by: 'local-cli', decided_at: T0, failure: 'not claimed within the claim window', updated_at: T0 + 1_200_000 }, /^✅ APPROVED by local-cli .*\n⌛ EXPIRED at 2026-01-01 10:20:00 UTC: not claimed within the claim window\./],
    ['revoked', { decision_reason: 'leak', updated_at: T0 + 60_000 }, /^🚫 REVOKED at 2026-01-01 10:01:00 UTC\nWhy: leak/],
    ['failed', { failure: 'vault down', updated_at: T0 }, /^⚠️ FAILED at 2026-01-01 10:00:00 UTC: vault down/],
  ] as const)('%s is final and says so first', (status, over, first) => {
    const r = renderApproval(view({ status, ...over }));
    expect(r.final).toBe(true);
    expect(r.keyboard).toEqual([]);
    expect(shown(r.html)).toMatch(first);
  });

  it('tier 3 shows the quorum and the votes', () => {
    const r = renderApproval(
      view({ tier: 2, required_tier: 3 }, { quorum: 2, votes: [{ approver: 'telegram:1', decision: 'approve', reason: null, at: T0 }], names: new Map([['telegram:1', 'Alice']]) }),
    );
    const text = shown(r.html);
    expect(text).toContain('Approval needed — tier 3, 2 distinct approvers');
    expect(text).toContain('Tier: 3 (agent asked for 2; policy requires 3)');
    expect(text).toContain('Votes: 1 of 2 approvals — ✅ Alice (telegram:1)');
  });

  it('gate requests show the repository and refs', () => {
    const text = shown(renderApproval(view({ resource: 'gate', scope: JSON.stringify({ repo: 'homelab/infra', refs: ['refs/heads/agent/x'] }) })).html);
    expect(text).toContain('Repository: homelab/infra');
    expect(text).toContain('Refs (1):\n• refs/heads/agent/x');
  });
});

describe('shortening to 4096 characters', () => {
  const essentials = (text: string, paths: number) => {
    expect(text).toContain(`Request: ${ID}`);
    expect(text).toContain('Agent: moltbot');
    expect(text).toContain('Tier: 2');
    expect(text).toContain('Times out: 2026-01-01 10:10:00 UTC');
    expect(text).toContain(`Vault paths (${paths}):`);
  };
  const manyPaths = (n: number, len = 400) =>
    JSON.stringify({ vault_paths: Array.from({ length: n }, (_, i) => ({ path: `homelab/data/${String(i).padStart(3, '0')}/${'p'.repeat(len)}`, capabilities: ['read', 'create', 'update'] })) });

  it('a long reason is cut first, keeping every path', () => {
    const reason = '<&>'.repeat(2000); // 6000 characters, each needing an escape
    const r = renderApproval(view({ reason }));
    const text = shown(r.html);
    expect(text.length).toBeLessThanOrEqual(4096);
    expect(visibleLength(r.html)).toBe(text.length);
    essentials(text, 1);
    expect(text).toContain('• homelab/data/apps/web: read, update');
    expect(text).toMatch(/Reason: (<&>)+.{0,2}… \(\d+ more characters\)/);
  });

  it('then the path list is collapsed with "… and N more", keeping the count', () => {
    const r = renderApproval(view({ reason: 'x'.repeat(2000), scope: manyPaths(64) }));
    const text = shown(r.html);
    expect(text.length).toBeLessThanOrEqual(4096);
    essentials(text, 64);
    const listed = text.split('\n').filter((l) => l.startsWith('• ')).length;
    expect(listed).toBeGreaterThan(0);
    expect(text).toContain(`… and ${64 - listed} more`);
    // The reason keeps 200 characters, note included.
    const kept = /Reason: (x+)… \((\d+) more characters\)\n/.exec(text)!;
    expect(kept[1]!.length + `… (${kept[2]} more characters)`.length).toBe(200);
    expect(kept[1]!.length + Number(kept[2])).toBe(2000);
  });

  it('a decided request keeps its outcome line when shortened', () => {
    const r = renderApproval(view({ status: 'denied', decided_by: 'local-cli', decided_at: T0, decision_reason: 'no'.repeat(3000), reason: 'y'.repeat(2000), scope: manyPaths(64, 500) }));
    const text = shown(r.html);
    expect(text.length).toBeLessThanOrEqual(4096);
    expect(text).toMatch(/^❌ DENIED by local-cli at 2026-01-01 10:00:00 UTC\nWhy: (no){100,}n?… \(\d+ more characters\)\n/);
    essentials(text, 64);
  });

  it('HTML escaping does not count against the limit, so nothing is cut needlessly', () => {
    const reason = '&'.repeat(3500); // 17500 characters of HTML, 3500 shown
    const text = shown(renderApproval(view({ reason })).html);
    expect(text).toContain(`Reason: ${reason}\n`);
  });

  it('escapeHtml and visibleLength agree with Telegram', () => {
    const s = `a<b>&"c" 🔐`;
    expect(shown(escapeHtml(s))).toBe(s);
    expect(visibleLength(`<b>${escapeHtml(s)}</b>`)).toBe(s.length);
  });
});
