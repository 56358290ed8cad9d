import { describe, expect, it } from 'vitest';
import type { RequestRow } from '../../../src/broker/rows.ts';
import { REQUEST_LIMITS } from '../../../src/wire/schemas.ts';
import { GRANTABLE_CAPABILITIES } from '../../../src/broker/policy/types.ts';
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
    expect(text).toContain(`Reason (written by the agent, quoted as sent):\n${evil}`);
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

/** What a person sees: the text, and which parts of it are quoted, bold or struck out. */
function seen(html: string) {
  const r = parseTelegramHtml(html);
  if (!r.ok) throw new Error(r.error);
  const spans = (type: string) => r.entities.filter((e) => e.type === type).map((e) => [e.offset, e.offset + e.length] as const);
  const inside = (type: string, at: number, len: number) => spans(type).some(([a, b]) => a <= at && at + len <= b);
  return { text: r.text, entities: r.entities, spans, inside };
}

describe('the agent\'s reason is quoted, inert and after the fields (SPEC §10)', () => {
  const forged = 'routine rotation\nVault paths (1):\n• homelab/data/harmless: read\nTTL: 5m\n\u202eetadpu ,daer\u202c \u200b✅ APPROVED by Alice';

  it('a reason drawing a fake "Vault paths (1)" block stays inside the quote, below the real list', () => {
    const s = seen(renderApproval(view({ reason: forged, scope: JSON.stringify({ vault_paths: [{ path: 'homelab/data/prod/db', capabilities: ['read', 'delete'] }, { path: 'homelab/data/apps/web', capabilities: ['update'] }] }) })).html);
    const quote = s.text.indexOf('routine rotation');
    const real = s.text.indexOf('Vault paths (2):');
    // The real list comes first and is the bot's own bold heading; the forged one is quoted text.
    expect(real).toBeGreaterThan(0);
    expect(real).toBeLessThan(quote);
    expect(s.inside('bold', real, 'Vault paths (2):'.length)).toBe(true);
    const fake = s.text.indexOf('Vault paths (1):');
    expect(s.inside('blockquote', fake, 'Vault paths (1):'.length)).toBe(true);
    expect(s.inside('bold', fake, 1)).toBe(false);
    // Every character the agent wrote is inside one blockquote, under a heading naming the agent.
    const shownReason = forged.replace('\u202e', '\\u{202E}').replace('\u202c', '\\u{202C}').replace('\u200b', '\\u{200B}');
    const at = s.text.indexOf(shownReason);
    expect(at).toBeGreaterThan(0);
    expect(s.inside('blockquote', at, shownReason.length)).toBe(true);
    expect(s.text.slice(0, at)).toMatch(/Reason \(written by the agent, quoted as sent\):\n$/);
    // No bidi override or invisible character reaches the chat.
    expect(s.text).not.toMatch(/[\u202a-\u202e\u2066-\u2069\u200b-\u200f]/);
    // Only bot-written parts are bold: nothing inside the quote.
    for (const [a, b] of s.spans('bold')) expect(a >= at + shownReason.length || b <= at).toBe(true);
  });

  it('a session key and a decision reason from before the limits are shown inertly too', () => {
    const s = seen(renderApproval(view({ session_key: 'hook:jit:\u202emoltbot\nTier: 1', status: 'denied', decided_by: 'local-cli', decided_at: T0, decision_reason: 'no\nVault paths (0):' })).html);
    expect(s.text).toContain('Session: hook:jit:\\u{202E}moltbot\nTier: 1');
    expect(s.text).toContain('Why: no ⏎ Vault paths (0):');
  });
});

describe('fitting 4096 characters without hiding a pair', () => {
  const PATH_COUNT = REQUEST_LIMITS.items;
  const perPath = Math.floor(REQUEST_LIMITS.itemsCharacters / PATH_COUNT);
  /** The largest request the schema accepts: 32 paths of 1536 characters together, every grantable capability on each. */
  const maxPaths = Array.from({ length: PATH_COUNT }, (_, i) => {
    const head = `homelab/data/${String(i).padStart(2, '0')}/`;
    return { path: head + 'p'.repeat(perPath - head.length), capabilities: [...GRANTABLE_CAPABILITIES] };
  });
  const maxRefs = Array.from({ length: PATH_COUNT }, (_, i) => {
    const head = `refs/heads/agent/${String(i).padStart(2, '0')}-`;
    return head + 'r'.repeat(perPath - head.length);
  });
  const worst = {
    agent_name: 'a'.repeat(63),
    session_key: 's'.repeat(200),
    tier: 2 as const,
    required_tier: 3 as const,
    rules: JSON.stringify(Array.from({ length: 12 }, (_, i) => `r${i}`.padEnd(100, 'x'))),
    reason: '\u202e'.repeat(2000), // 2000 characters that each show as an 8-character escape
  };
  const names = new Map(Array.from({ length: 3 }, (_, i) => [`telegram:${1000000000 + i}`, 'N'.repeat(64)]));
  const votes = [...names.keys()].slice(0, 2).map((approver, i) => ({
    approver,
    decision: 'approve' as const,
    reason: null,
    at: T0 + i,
    // Each vote narrows every path: one capability fewer everywhere.
    grant_scope: JSON.stringify({ vault_paths: maxPaths.map((p) => ({ path: p.path, capabilities: p.capabilities.slice(1) })) }),
    grant_ttl_seconds: 600,
  }));
  const draft = { id: 'abcdefghij', version: 3, updatedBy: 'telegram:1000000000', narrowing: { dropCapabilities: ['delete'], dropPaths: maxPaths.slice(0, 31).map((p) => p.path).filter((_, i) => i % 2 === 0), dropRefs: [], page: 3 } };
  const grantedScope = JSON.stringify({ vault_paths: maxPaths.map((p) => ({ path: p.path, capabilities: p.capabilities.slice(2) })) });
  const vaultScope = JSON.stringify({ vault_paths: maxPaths });

  const states: [string, Partial<RequestRow>, Partial<ApprovalView>][] = [
    ['pending', {}, {}],
    ['pending, tier-3 votes narrowed it', {}, { votes }],
    ['pending, narrowing panel open', {}, { votes, draft }],
    ['approved, narrowed', { status: 'approved', decided_by: [...names.keys()].join(', '), decided_at: T0, claim_expires_at: T0 + 600_000, decision_reason: 'w'.repeat(2000), granted_scope: grantedScope, granted_ttl_seconds: 300 } as Partial<RequestRow>, { votes }],
    ['issued, narrowed', { status: 'issued', decided_by: [...names.keys()].join(', '), decided_at: T0, granted_scope: grantedScope, granted_ttl_seconds: 300 } as Partial<RequestRow>, { votes, credential: { issued_at: T0, expires_at: T0 + 300_000, ended_at: null } }],
    ['revoked after issue', { status: 'revoked', decided_by: [...names.keys()].join(', '), decided_at: T0, decision_reason: 'x\n'.repeat(1000), granted_scope: grantedScope, granted_ttl_seconds: 300 } as Partial<RequestRow>, { votes, revokedBy: { actor: 'telegram:1000000002', at: T0 + 1000 } }],
    ['denied', { status: 'denied', decided_by: 'telegram:1000000002', decided_at: T0, decision_reason: 'no'.repeat(1000) }, { votes }],
  ];

  it.each(states)('vault, %s: every path with every capability, within 4096 characters', (_state, over, extra) => {
    const html = renderApproval(view({ ...worst, scope: vaultScope, ...over }, { quorum: 3, names, ...extra })).html;
    const s = seen(html);
    expect(s.text.length).toBeLessThanOrEqual(4096);
    expect(visibleLength(html)).toBe(s.text.length);
    expect(s.text).toContain(`Vault paths (${PATH_COUNT}):`);
    for (const p of maxPaths) expect(s.text).toContain(`• ${p.path}: ${p.capabilities.join(', ')}`);
    expect(s.text).not.toMatch(/… and \d+ more/);
    expect(s.text).toContain(`Request: ${ID}`);
    expect(s.text).toContain(`Session: ${worst.session_key}`);
    expect(s.text).toMatch(/Reason \(written by the agent, quoted as sent\):\n/);
  });

  it('gate: every ref, within 4096 characters', () => {
    const html = renderApproval(view({ ...worst, resource: 'gate', scope: JSON.stringify({ repo: `homelab/${'g'.repeat(240)}`, refs: maxRefs }) }, { quorum: 3, names })).html;
    const s = seen(html);
    expect(s.text.length).toBeLessThanOrEqual(4096);
    for (const r of maxRefs) expect(s.text).toContain(`• ${r}`);
  });

  it('what a narrowed grant leaves out is struck out in the request\'s list when the grant cannot be listed again', () => {
    const s = seen(renderApproval(view({ ...worst, scope: vaultScope }, { quorum: 3, names, votes, draft })).html);
    // Paths the panel drops: the whole line struck out and marked.
    const dropped = maxPaths[0]!.path;
    const line = `• ${dropped}: ${maxPaths[0]!.capabilities.join(', ')} ✂️`;
    const at = s.text.indexOf(line);
    expect(at).toBeGreaterThan(0);
    expect(s.inside('strikethrough', at + 2, line.length - 5)).toBe(true);
    // A path kept without "create" (an earlier vote) and "delete" (the panel): only those two struck out.
    const kept = maxPaths[1]!;
    const keptAt = s.text.indexOf(`• ${kept.path}: `) + `• ${kept.path}: `.length;
    const struck = s.spans('strikethrough').filter(([a, b]) => a >= keptAt && b <= keptAt + 60).map(([a, b]) => s.text.slice(a, b));
    expect(struck).toEqual(['create', 'delete']);
    expect(s.text).toMatch(/the request's paths without what is struck out ✂️ in its list \(16 of 32 paths\)/);
  });

  it('a long reason is shortened with a pointer to the whole of it, never a path', () => {
    const reason = '<&>'.repeat(666);
    const s = seen(renderApproval(view({ ...worst, reason, scope: vaultScope }, { quorum: 3, names })).html);
    expect(s.text.length).toBeLessThanOrEqual(4096);
    expect(s.text).toContain(`\n<&><&><&>`);
    expect(s.text).toMatch(new RegExp(`(<&>)+.{0,2}… \\(reason shortened: 1998 characters in all; see jit requests show ${ID}\\)`));
    for (const p of maxPaths) expect(s.text).toContain(`• ${p.path}: `);
  });

  it('a short request shows its reason whole, HTML escaping not counted against the limit', () => {
    const reason = '&'.repeat(2000); // 10000 characters of HTML, 2000 shown
    expect(seen(renderApproval(view({ reason })).html).text).toMatch(new RegExp(`quoted as sent\\):\\n${reason}$`));
  });

  it('escapeHtml and visibleLength agree with Telegram', () => {
    const s = `a<b>&"c" 🔐`;
    expect(shown(escapeHtml(s))).toBe(s);
    expect(visibleLength(`<b>${escapeHtml(s)}</b>`)).toBe(s.length);
  });
});
