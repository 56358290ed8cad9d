import { REQUEST_LIMITS } from '../../../src/wire/schemas.ts';
import { describe, expect, it } from 'vitest';
import type { Grant } from '../../../src/broker/narrowing.ts';
import type { RequestRow } from '../../../src/broker/rows.ts';
import { EMPTY_DRAFT, applyPanelAction, draftToNarrowing, panelData, parsePanelData, ttlChoices, type PanelAction } from '../../../src/telegram/narrowing-panel.ts';
import { renderApproval, type ApprovalView } from '../../../src/telegram/render.ts';
import { parseTelegramHtml } from '../../fakes/telegram-emulator/parse-html.ts';

const ID = 'req_01jabcdefghjkmnpqrstvwxyz0';
const T0 = Date.UTC(2026, 0, 1, 10);
const requested: Grant = {
  resource: 'vault',
  vault_paths: [
    { path: 'a/web', capabilities: ['read', 'update'] },
    { path: 'a/db', capabilities: ['read'] },
  ],
  ttl_seconds: 1800,
};

describe('panel callback data', () => {
  const actions: PanelAction[] = [
    { kind: 'ttl', seconds: 999_999_999 },
    { kind: 'capability', drop: true, capability: 'update' },
    { kind: 'capability', drop: false, capability: 'create' },
    { kind: 'path', drop: true, index: 7 },
    { kind: 'ref', drop: false, index: 999 },
    { kind: 'page', page: 99 },
    { kind: 'approve', version: 999_999_999 },
    { kind: 'close' },
  ];

  it.each(actions)('round-trips %j within 64 bytes', (action) => {
    const data = panelData('abcdefgh23', action);
    expect(Buffer.byteLength(data)).toBeLessThanOrEqual(64);
    expect(parsePanelData(data)).toEqual({ draftId: 'abcdefgh23', action });
  });

  it.each(['', 'g:', 'g:abcdefgh23', 'g:abcdefgh23:t:0', 'g:abcdefgh23:t:-5', 'g:ABCDEFGH23:x', 'g:abcdefgh2:x', 'g:abcdefgh23:*c:read', 'g:abcdefgh23:-c:READ', 'g:abcdefgh23:ok:0', 'g:abcdefgh23:x\n', 'g:abcdefgh23:-p:1234', 'g:abcdefgh23:pg:100', 'g:abcdefgh23:pg:-1'])(
    'rejects %j',
    (data) => expect(parsePanelData(data)).toBeUndefined(),
  );
});

describe('applyPanelAction', () => {
  it('offers 5m, 15m, 1h below the grant\'s TTL, then the grant\'s own', () => {
    expect(ttlChoices(1800)).toEqual([300, 900, 1800]);
    expect(ttlChoices(7200)).toEqual([300, 900, 3600, 7200]);
    expect(ttlChoices(120)).toEqual([120]);
  });

  it('is idempotent: the same drop twice changes the draft once', () => {
    const once = applyPanelAction(EMPTY_DRAFT, { kind: 'capability', drop: true, capability: 'update' }, requested, requested);
    expect(once).toMatchObject({ ok: true, changed: true, draft: { dropCapabilities: ['update'] } });
    const twice = applyPanelAction(once.ok ? once.draft : EMPTY_DRAFT, { kind: 'capability', drop: true, capability: 'update' }, requested, requested);
    expect(twice).toMatchObject({ ok: true, changed: false, draft: { dropCapabilities: ['update'] } });
  });

  it.each<[PanelAction, RegExp]>([
    [{ kind: 'ttl', seconds: 3600 }, /longer than this grant allows/],
    [{ kind: 'ttl', seconds: 1000 }, /not one of the TTLs offered/],
    [{ kind: 'capability', drop: false, capability: 'delete' }, /not part of this request/],
    [{ kind: 'path', drop: true, index: 2 }, /no path 3 in this request/],
    [{ kind: 'ref', drop: true, index: 0 }, /no refs to drop/],
  ])('refuses %j as forged', (action, message) => {
    const r = applyPanelAction(EMPTY_DRAFT, action, requested, requested);
    expect(r).toMatchObject({ ok: false, forged: true });
    expect(!r.ok && r.answer).toMatch(message);
  });

  it('refuses emptying the grant and adding back what an earlier vote dropped, without calling it forged', () => {
    const ceiling: Grant = { resource: 'vault', vault_paths: [{ path: 'a/web', capabilities: ['read'] }], ttl_seconds: 600 };
    expect(applyPanelAction(EMPTY_DRAFT, { kind: 'capability', drop: true, capability: 'read' }, requested, ceiling)).toMatchObject({ ok: false, forged: false, answer: expect.stringMatching(/nothing to grant/) });
    expect(applyPanelAction(EMPTY_DRAFT, { kind: 'path', drop: false, index: 1 }, requested, ceiling)).toMatchObject({ ok: false, forged: false, answer: expect.stringMatching(/earlier approval/) });
    // A TTL chosen before the ceiling shrank is capped by it.
    expect(draftToNarrowing({ ...EMPTY_DRAFT, ttlSeconds: 900 }, ceiling)).not.toHaveProperty('ttlSeconds');
    expect(draftToNarrowing({ ...EMPTY_DRAFT, ttlSeconds: 300 }, ceiling)).toHaveProperty('ttlSeconds', 300);
  });

  it('turns a page even when the ceiling has shrunk to exactly what the draft drops (tier 3), so the approver can page back and keep an item', () => {
    const paths = Array.from({ length: 10 }, (_, i) => `a/p${i}`);
    const many: Grant = { resource: 'vault', vault_paths: paths.map((path) => ({ path, capabilities: ['read'] })), ttl_seconds: 1800 };
    // This approver dropped the whole first page, then another approver's narrowed vote kept only that page.
    const draft = { ...EMPTY_DRAFT, dropPaths: paths.slice(0, 8), page: 1 };
    const ceiling: Grant = { ...many, vault_paths: many.vault_paths.slice(0, 8) };
    expect(applyPanelAction(draft, { kind: 'page', page: 0 }, many, ceiling)).toMatchObject({ ok: true, changed: true, draft: { page: 0, dropPaths: paths.slice(0, 8) } });
    // Keeping an item there is then allowed; dropping the last kept one is still refused.
    const back = { ...draft, page: 0 };
    expect(applyPanelAction(back, { kind: 'path', drop: false, index: 0 }, many, ceiling)).toMatchObject({ ok: true, changed: true });
    expect(applyPanelAction(back, { kind: 'page', page: 0 }, many, ceiling)).toMatchObject({ ok: true, changed: false });
    expect(applyPanelAction(back, { kind: 'page', page: 2 }, many, ceiling)).toMatchObject({ ok: false, forged: true });
  });
});

describe('rendering', () => {
  const row = (over: Partial<RequestRow> = {}): RequestRow => ({
    id: ID,
    agent_id: 'agt_x',
    agent_name: 'moltbot',
    resource: 'vault',
    tier: 2,
    required_tier: 2,
    status: 'pending',
    reason: 'rotate',
    scope: JSON.stringify({ vault_paths: requested.resource === 'vault' ? requested.vault_paths : [] }),
    ttl_seconds: 1800,
    session_key: null,
    rules: '[]',
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
  });
  const shown = (html: string) => {
    const r = parseTelegramHtml(html);
    if (!r.ok) throw new Error(r.error);
    return r.text;
  };
  const view = (over: Partial<RequestRow> = {}, extra: Partial<ApprovalView> = {}): ApprovalView => ({ request: row(over), votes: [], quorum: 1, ...extra });

  it('the open panel: escaped, every button within 64 bytes, approve bound to the version', () => {
    const evil = 'a/<b>&"x"';
    const r = renderApproval(
      view(
        { scope: JSON.stringify({ vault_paths: [{ path: evil, capabilities: ['read', 'update'] }, { path: 'a/db', capabilities: ['read'] }] }) },
        { draft: { id: 'abcdefgh23', version: 4, narrowing: { ...EMPTY_DRAFT, dropCapabilities: ['update'], ttlSeconds: 300 }, updatedBy: 'telegram:1' }, names: new Map([['telegram:1', '<Eve>']]) },
      ),
    );
    const text = shown(r.html);
    expect(text).toContain('✂️ Narrowing — last change by <Eve> (telegram:1)');
    expect(text).toContain(`✅ Approve as shown grants exactly:\n• ${evil}: read\n• a/db: read\nTTL: 5m (asked 30m)\nNot granted: update on ${evil}; TTL 30m → 5m`);
    const buttons = r.keyboard.flat();
    for (const b of buttons) expect(Buffer.byteLength(b.callback_data)).toBeLessThanOrEqual(64);
    expect(buttons.map((b) => b.text)).toEqual(['✔️ 5m', '⏱ 15m', '⏱ 30m (full)', '✂️ drop read', '↩️ keep update', '✂️ drop a/<b>&"x"', '✂️ drop a/db', '✅ Approve as shown', '↩️ Back', '❌ Deny']);
    expect(buttons.find((b) => b.text === '✅ Approve as shown')!.callback_data).toBe('g:abcdefgh23:ok:4');
  });

  it('after approval: asked below, granted in the outcome; a grant as asked says so', () => {
    const approved = { status: 'approved' as const, decided_by: 'local-cli', decided_at: T0 + 1000, claim_expires_at: T0 + 601_000 };
    const narrowed = shown(renderApproval(view({ ...approved, granted_scope: JSON.stringify({ vault_paths: [{ path: 'a/web', capabilities: ['read'] }] }), granted_ttl_seconds: 300 })).html);
    expect(narrowed).toMatch(/^✅ APPROVED by local-cli at .*\n⏳ Waiting .*\n✂️ NARROWED — granted less than asked:\n• a\/web: read\nTTL: 5m \(asked 30m\)\nNot granted: update on a\/web; path a\/db; TTL 30m → 5m\n\n🔐 Request/);
    expect(narrowed).toContain('Vault paths (2):\n• a/web: read, update\n• a/db: read\nTTL: 30m');
    expect(shown(renderApproval(view(approved)).html)).toContain('Granted: everything asked, TTL 30m.');
  });

  it('stays within 4096 characters with the panel open on the largest request allowed, every pair shown', () => {
    const paths = Array.from({ length: REQUEST_LIMITS.items }, (_, i) => ({ path: `homelab/data/${String(i).padStart(2, '0')}/${'p'.repeat(REQUEST_LIMITS.itemsCharacters / REQUEST_LIMITS.items - 17)}`, capabilities: ['read', 'update'] }));
    const r = renderApproval(view({ reason: 'r'.repeat(2000), scope: JSON.stringify({ vault_paths: paths }) }, { draft: { id: 'abcdefgh23', version: 1, narrowing: { ...EMPTY_DRAFT, dropCapabilities: ['update'] }, updatedBy: 'telegram:1' } }));
    const text = shown(r.html);
    expect(text.length).toBeLessThanOrEqual(4096);
    expect(text).toContain('Vault paths (32):');
    for (const p of paths) expect(text).toContain(`• ${p.path}: read, update`);
    expect(text).toContain('✂️ Narrowing');
    expect(r.keyboard.flat().length).toBeLessThanOrEqual(100);
  });

  it('a request stored before the limits, too large for one message, is not shown in part: it says so and offers only Deny', () => {
    const paths = Array.from({ length: 60 }, (_, i) => ({ path: `homelab/data/${i}/${'p'.repeat(300)}`, capabilities: ['read', 'update'] }));
    const r = renderApproval(view({ reason: 'r'.repeat(2000), scope: JSON.stringify({ vault_paths: paths }) }));
    const text = shown(r.html);
    expect(text.length).toBeLessThanOrEqual(4096);
    expect(text).toContain('This request names 60 paths, more than one message can show in full');
    expect(text).not.toContain('homelab/data/0/');
    expect(r.keyboard).toEqual([[{ text: '❌ Deny', callback_data: expect.stringMatching(/^d:req_/) }]]);
  });
});
