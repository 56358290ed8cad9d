/**
 * The storage seam alone: the storage work of one tier-1 Vault issue
 * (authenticate, the request transaction, the commit transaction: the
 * same statements as POST /jit/request, see docs/benchmarks.md) run N
 * times in this process, two ways over the same SQLite file:
 *
 * - `seam`: through the asynchronous Storage (src/storage/sqlite/storage.ts),
 *   awaiting every call, as the broker does;
 * - `floor`: the same SQLite repositories called synchronously inside one
 *   BEGIN IMMEDIATE … COMMIT, no promise anywhere.
 *
 * The difference is what the asynchronous interface costs per issue (CPU µs).
 *
 *   node --import tsx bench/storage-seam.ts [--issues 5000] [--rounds 5] [--memory]
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { Transaction } from '../src/storage/storage.ts';
import { createSqliteStorage, openSqliteStorage, sqliteDatabase } from '../src/storage/sqlite/storage.ts';
import { sqliteAgents } from '../src/storage/sqlite/agents.ts';
import { sqliteAudit } from '../src/storage/sqlite/audit.ts';
import { sqliteCredentials } from '../src/storage/sqlite/credentials.ts';
import { sqliteRateLimits, sqliteRequests } from '../src/storage/sqlite/requests.ts';

const { values: args } = parseArgs({ options: { issues: { type: 'string', default: '5000' }, rounds: { type: 'string', default: '5' }, memory: { type: 'boolean', default: false } } });
const ISSUES = Number(args.issues);
const ROUNDS = Number(args.rounds);

const dir = mkdtempSync(join(tmpdir(), 'jit-seam-'));
// --memory: an in-memory database, so that the JavaScript around the statements is most of what is measured.
const storage = openSqliteStorage(args.memory ? ':memory:' : join(dir, 'jit.db'));
const db = sqliteDatabase(storage);
const agent = { id: 'agt_bench', name: 'bench', token_id: 'tok_bench', token_hash: 'x'.repeat(64), session_key: null, created_at: Date.now() };
await storage.agents.insert(agent);

let n = 0;
const requestRow = (id: string, now: number) => ({
  id,
  agent_id: agent.id,
  agent_name: agent.name,
  resource: 'vault' as const,
  tier: 1 as const,
  required_tier: 1 as const,
  status: 'approved' as const,
  reason: 'benchmark',
  scope: '{"vault_paths":[{"path":"bench/data/app","capabilities":["read"]}]}',
  ttl_seconds: 600,
  session_key: null,
  rules: '["bench"]',
  idempotency_key: null,
  body_hash: null,
  created_at: now,
  updated_at: now,
  approval_expires_at: null,
  claim_expires_at: null,
  decided_by: 'policy',
  decided_at: now,
  decision_reason: 'tier 1',
  failure: null,
});
const credentialRow = (id: string, requestId: string, now: number) => ({
  id,
  request_id: requestId,
  type: 'vault_token' as const,
  state: 'minting' as const,
  vault_policy: `jit-${id}`,
  accessor: null,
  jti: null,
  issued_at: null,
  expires_at: now + 600_000,
  reserved_at: now,
});
const auditRow = (prev: { seq: number; hash: string } | undefined, event: string, requestId: string, now: number) => {
  const prevHash = prev?.hash ?? '0'.repeat(64);
  const seq = (prev?.seq ?? 0) + 1;
  const data = '{}';
  return { seq, at: now, event, actor: 'broker', request_id: requestId, data, prev_hash: prevHash, hash: createHash('sha256').update(prevHash).update(`${seq}${event}${data}`).digest('hex') };
};

type Audit = { last(): unknown; insert(row: ReturnType<typeof auditRow>): unknown };

/** One issue through the asynchronous storage, every call awaited. */
async function seamIssue(): Promise<void> {
  const id = `req_${++n}`;
  const credId = `cred_${n}`;
  const now = Date.now();
  await storage.agents.byTokenId(agent.token_id);
  const append = async (tx: Transaction, event: string) => {
    await tx.audit.insert(auditRow(await tx.audit.last(), event, id, now));
  };
  await storage.transaction(async (tx) => {
    await tx.agents.byName(agent.name);
    await tx.rateLimits.nthNewestSince(agent.id, now + 1, 100) // (an empty window: a lookup whose cost does not grow with the table);
    await tx.requests.insert(requestRow(id, now));
    await append(tx, 'request.created');
    await append(tx, 'request.approved');
    await tx.requests.get(id);
    await tx.credentials.insert(credentialRow(credId, id, now));
  });
  await storage.transaction(async (tx) => {
    await tx.credentials.markLive(credId, `acc_${n}`, now, now + 600_000);
    await tx.requests.move(id, 'approved', 'issued', now);
    await append(tx, 'credential.issued');
  });
}

// Plain BEGIN IMMEDIATE / COMMIT statements: the least a synchronous transaction can cost.
const begin = db.prepare('BEGIN IMMEDIATE');
const commit = db.prepare('COMMIT');
const inTransaction = (f: () => void) => {
  begin.run();
  f();
  commit.run();
};
const sync = { agents: sqliteAgents(db), rateLimits: sqliteRateLimits(db), requests: sqliteRequests(db), credentials: sqliteCredentials(db), audit: sqliteAudit(db) };

/** The same statements, synchronous, in better-sqlite3 transactions. */
function floorIssue(): void {
  const id = `req_${++n}`;
  const credId = `cred_${n}`;
  const now = Date.now();
  const append = (a: Audit, event: string) => a.insert(auditRow(a.last() as { seq: number; hash: string } | undefined, event, id, now));
  sync.agents.byTokenId(agent.token_id);
  inTransaction(() => {
    sync.agents.byName(agent.name);
    sync.rateLimits.nthNewestSince(agent.id, now + 1, 100) // (an empty window: a lookup whose cost does not grow with the table);
    sync.requests.insert(requestRow(id, now));
    append(sync.audit, 'request.created');
    append(sync.audit, 'request.approved');
    sync.requests.get(id);
    sync.credentials.insert(credentialRow(credId, id, now));
  });
  inTransaction(() => {
    sync.credentials.markLive(credId, `acc_${n}`, now, now + 600_000);
    sync.requests.move(id, 'approved', 'issued', now);
    append(sync.audit, 'credential.issued');
  });
}

async function measure(which: 'seam' | 'floor'): Promise<number> {
  const start = process.cpuUsage();
  if (which === 'seam') for (let i = 0; i < ISSUES; i++) await seamIssue();
  else for (let i = 0; i < ISSUES; i++) floorIssue();
  const used = process.cpuUsage(start);
  return (used.user + used.system) / ISSUES;
}

void createSqliteStorage; // (the engine under test is the one openSqliteStorage builds)
const results: Record<'seam' | 'floor', number[]> = { seam: [], floor: [] };
await measure('seam'); // warm-up
measure('floor');
for (let r = 0; r < ROUNDS; r++) {
  for (const which of (r % 2 === 0 ? ['floor', 'seam'] : ['seam', 'floor']) as ('seam' | 'floor')[]) results[which].push(await measure(which));
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
const floor = median(results.floor);
const seam = median(results.seam);
process.stdout.write(`CPU per issue, median of ${ROUNDS} rounds of ${ISSUES}: floor (sync) ${floor.toFixed(1)} µs, seam (async) ${seam.toFixed(1)} µs, seam costs ${(seam - floor).toFixed(1)} µs (+${((seam / floor - 1) * 100).toFixed(1)} %)\n`);
await storage.close();
rmSync(dir, { recursive: true, force: true });
