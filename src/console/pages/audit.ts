import { Hono } from 'hono';
import { html } from 'hono/html';
import { z } from 'zod';
import { verifyAuditChain, type AuditVerdict } from '../../broker/audit.ts';
import type { BrokerDeps } from '../../broker/deps.ts';
import { inertText } from '../../lib/inert-text.ts';
import type { AuditRow } from '../../storage/rows.ts';
import type { ConsoleEnv } from '../env.ts';
import { notice, optional, parseQuery, voter, voterLabels, when, type Html } from './common.ts';

export const AUDIT_PAGE_SIZE = 50;

/**
 * The chain's verify status is recomputed at most this often: a full
 * verify reads the whole log (measured on 10,000 entries: 66-200 ms on
 * SQLite, whose reads block the event loop meanwhile, 170-340 ms on
 * PostgreSQL; docs/console-pages.md), so page loads share one result
 * instead of each paying for it.
 */
export const AUDIT_VERIFY_MAX_AGE_MS = 60_000;

/** Past this many entries (about 1 s of verify at the rates above) the console does not verify: `jit audit verify` on the broker host does. */
export const AUDIT_VERIFY_MAX_ENTRIES = 50_000;

/** Fields of an entry's data left out on the console (a Vault token's accessor: an identifier that can revoke the token; the CLI's `jit audit export` has it). */
const HIDDEN_FIELDS = new Set(['accessor']);

/**
 * An entry's data (canonical JSON) as one inert line, `key: value` pairs
 * joined by "; " (nested values as JSON), without {@link HIDDEN_FIELDS}.
 */
export function auditDataText(data: string): string {
  let parsed: unknown;
  try {
    parsed = JSON.parse(data);
  } catch {
    return inertText(data);
  }
  if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) {
    const pairs = Object.entries(parsed)
      .filter(([k, v]) => !HIDDEN_FIELDS.has(k) && v !== null && v !== undefined)
      .map(([k, v]) => `${k}: ${typeof v === 'string' ? v : JSON.stringify(v)}`);
    return pairs.length === 0 ? '-' : inertText(pairs.join('; '));
  }
  return inertText(JSON.stringify(parsed));
}

/** Audit entries as boxes (readable on a phone): seq, event, time, actor (named when an approver), request link, details. */
export function auditList(rows: readonly AuditRow[], labels: Map<string, string>, labelledBy: string, linkRequests: boolean): Html {
  return html`<ol class="audit" aria-labelledby="${labelledBy}">
    ${rows.map(
      (r) => html`<li class="request">
        <p><strong>#${r.seq}</strong> ${r.event} · ${when(r.at)} · by ${voter(labels, r.actor)}${linkRequests && r.request_id ? html` · <a href="/console/requests/${r.request_id}/story">${r.request_id}</a>` : ''}</p>
        <p>${auditDataText(r.data)}</p>
      </li>`,
    )}
  </ol>`;
}

const Query = z.object({ before: optional(z.coerce.number().int('a whole number').min(2, 'at least 2').max(Number.MAX_SAFE_INTEGER)) }).strict();

type ChainStatus = { kind: 'verified'; verdict: AuditVerdict; at: number; tookMs: number } | { kind: 'too-big'; entries: number; cap: number } | { kind: 'failed'; message: string; at: number };

/** GET /audit: the audit log, newest first, a page of 50 (`?before=seq`), with the chain's verify status. `limits` (tests): the verify's cap and cache age. */
export function auditPage(deps: BrokerDeps, limits: { verifyMaxEntries?: number; verifyMaxAgeMs?: number } = {}): Hono<ConsoleEnv> {
  const maxEntries = limits.verifyMaxEntries ?? AUDIT_VERIFY_MAX_ENTRIES;
  const maxAgeMs = limits.verifyMaxAgeMs ?? AUDIT_VERIFY_MAX_AGE_MS;
  const app = new Hono<ConsoleEnv>();
  let cached: { status: ChainStatus; at: number } | undefined;
  let running: Promise<ChainStatus> | undefined;

  async function chainStatus(lastSeq: number): Promise<ChainStatus> {
    const now = deps.clock.now();
    if (cached && now - cached.at < maxAgeMs) return cached.status;
    if (lastSeq > maxEntries) return { kind: 'too-big', entries: lastSeq, cap: maxEntries };
    running ??= (async (): Promise<ChainStatus> => {
      const started = performance.now();
      try {
        const verdict = await verifyAuditChain(deps.storage, { jwks: deps.keys.jwks() });
        return { kind: 'verified', verdict, at: deps.clock.now(), tookMs: Math.round(performance.now() - started) };
      } catch (err) {
        deps.log.warn({ err }, 'console: audit chain verify failed to run');
        return { kind: 'failed', message: 'the log could not be read to the end', at: deps.clock.now() };
      }
    })().finally(() => (running = undefined));
    const status = await running;
    cached = { status, at: deps.clock.now() };
    return status;
  }

  function statusHtml(s: ChainStatus): Html {
    if (s.kind === 'too-big') {
      return notice('info', html`The log has ${s.entries} entries, more than the console verifies on a page load (${s.cap}). Verify it on the broker host: <code>jit audit verify</code>.`);
    }
    if (s.kind === 'failed') return notice('error', `Chain not verified at ${when(s.at)}: ${s.message}.`);
    const v = s.verdict;
    const heads = v.heads.newest
      ? `newest signed head: entry ${v.heads.newest.seq}, signed ${when(v.heads.newest.at)} with key ${v.heads.newest.kid} (${v.heads.checked} signed head${v.heads.checked === 1 ? '' : 's'} checked)`
      : 'no signed head checked yet: removal of entries from the end cannot be detected';
    const unchecked = v.heads.unchecked > 0 ? ` ${v.heads.unchecked} signed head(s) not checked: key(s) ${v.heads.unknownKids.join(', ')} not in the key ring.` : '';
    if (!v.ok) return notice('error', html`<strong>Audit log TAMPERED</strong> at entry ${v.seq}: ${v.problem} (verified ${when(s.at)}).`);
    return notice('ok', html`<strong>Chain intact</strong>: ${v.entries} entries verified at ${when(s.at)} (took ${s.tookMs} ms; re-verified at most once a minute); ${heads}.${unchecked}`);
  }

  app.get('/audit', async (c) => {
    const parsed = parseQuery(c, Query, 'Audit log');
    if (!parsed.ok) return parsed.response;
    const last = await deps.storage.audit.last();
    const lastSeq = last?.seq ?? 0;
    // Entries below `before` (seq is contiguous from 1): the newest page when absent.
    const before = Math.min(parsed.value.before ?? lastSeq + 1, lastSeq + 1);
    const from = Math.max(0, before - 1 - AUDIT_PAGE_SIZE);
    const rows = before > 1 ? (await deps.storage.audit.page(from, before - 1 - from)).reverse() : [];
    const labels = await voterLabels(deps.storage, rows.map((r) => r.actor));
    const status = await chainStatus(lastSeq);
    const oldest = rows[rows.length - 1];
    const newer = before <= lastSeq ? Math.min(before + AUDIT_PAGE_SIZE, lastSeq + 1) : undefined;
    return c.get('page')(
      'Audit log',
      html`<h1>Audit log</h1>
        ${statusHtml(status)}
        ${rows.length === 0
          ? html`<p>No entries.</p>`
          : html`<h2 id="a-entries">Entries ${oldest!.seq} to ${rows[0]!.seq} of ${lastSeq}, newest first</h2>
            ${auditList(rows, labels, 'a-entries', true)}`}
        <nav aria-label="Audit log pages">
          ${newer !== undefined ? html`<a href="/console/audit">Newest entries</a> <a href="/console/audit?before=${newer}" rel="prev">Newer entries</a>` : ''}
          ${oldest && oldest.seq > 1 ? html` <a href="/console/audit?before=${oldest.seq}" rel="next">Older entries</a>` : ''}
        </nav>`,
    );
  });
  return app;
}
