import { existsSync, statSync } from 'node:fs';
import pg from 'pg';
import type { Db } from './sqlite/open.ts';
import { openDatabase } from './sqlite/open.ts';
import { createPool, migrate, pgStorageError, shownDatabaseUrl, whyNotOpened, WRITE_LOCK_KEY } from './postgres/pool.ts';
import { StorageError, StorageUnavailableError } from './errors.ts';
import { postgresPool } from './postgres/storage.ts';
import type { Storage } from './storage.ts';

/*
 * `jit db copy`: an SQLite database (JIT_DB) into an empty PostgreSQL one.
 *
 * THE TABLE LIST below is the one place that says what happens to each
 * table. A table of either schema that it does not name stops the copy
 * before anything is written (a later migration added it: decide here
 * whether it is copied, skipped or the target's own), and
 * test/storage/copy.test.ts fails on every such table of the current
 * migrations, so a branch that adds a table cannot merge without saying.
 * Columns are matched by name at run time: a source column without a
 * target column, or a target column the copy cannot fill, stops it too.
 */

/** What the copy does with one table. */
export type TablePlan =
  /** In both schemas: every row is copied, in the source's rowid order (the target's identity columns number rows as inserted). */
  | { name: string; kind: 'copy'; targetGenerated?: readonly string[]; replaceMigrationRows?: boolean }
  /** Never copied: each engine's own (its migration record) or not worth moving (ephemeral: leases). In either schema; on the target it must be empty too. */
  | { name: string; kind: 'skip'; why: string }
  /** In the PostgreSQL schema only: nothing to copy; it must be empty like every other. */
  | { name: string; kind: 'target'; why: string };

/**
 * Every table of both schemas, in dependency order (a table after those it
 * references). `targetGenerated`: target columns the copy leaves to their
 * default (identities numbering rows as inserted). `replaceMigrationRows`:
 * rows the target's migrations made are replaced by the source's (the
 * installation id, which names this installation's Vault policies).
 */
export const COPY_PLAN: readonly TablePlan[] = [
  { name: 'agents', kind: 'copy' },
  { name: 'requests', kind: 'copy' },
  { name: 'credentials', kind: 'copy', targetGenerated: ['seq'] },
  { name: 'votes', kind: 'copy', targetGenerated: ['seq'] },
  { name: 'grant_policies', kind: 'copy' },
  { name: 'webhook_outbox', kind: 'copy' },
  { name: 'audit_log', kind: 'copy' },
  { name: 'audit_heads', kind: 'copy' },
  { name: 'rate_events', kind: 'copy' },
  { name: 'agent_refusals', kind: 'skip', why: "the previous version's rate-limit refusals, kept for its brokers during a rolling restart; rate_events holds this version's" },
  { name: 'settings', kind: 'copy', replaceMigrationRows: true },
  { name: 'service_settings', kind: 'copy' },
  { name: 'telegram_messages', kind: 'copy' },
  { name: 'telegram_users', kind: 'copy' },
  { name: 'telegram_narrowing', kind: 'copy' },
  { name: 'approvers', kind: 'copy' },
  { name: 'enrolment_tokens', kind: 'copy' },
  { name: 'passkeys', kind: 'copy' },
  { name: 'console_sessions', kind: 'copy' },
  { name: 'webauthn_challenges', kind: 'skip', why: 'ephemeral: WebAuthn challenges live 5 minutes; a ceremony under way during the copy is begun again' },
  { name: 'signing_key_ring', kind: 'target', why: "PostgreSQL's key ring: filled from the key file beside the SQLite database, sealed (jit db copy's key step)" },
  { name: 'signing_keys', kind: 'target', why: "PostgreSQL's key ring: filled from the key file beside the SQLite database, sealed (jit db copy's key step)" },
  { name: 'leases', kind: 'skip', why: 'ephemeral: node and Telegram leader leases, renewed every few seconds by the brokers that hold them' },
  { name: 'schema_migrations', kind: 'skip', why: "each engine's own migration record; the target's are applied by its migrations" },
];

/** Rows of `replaceMigrationRows` tables that the target's migrations make (an empty database already has them). */
const MIGRATION_ROWS: Record<string, { column: string; values: readonly string[] }> = {
  settings: { column: 'key', values: ['installation_id'] },
};

/** A refusal: nothing was written to the target (its transaction rolled back, or never began). */
export class CopyRefused extends StorageError {
  constructor(
    message: string,
    /** 2: wrong use or configuration (no source, target unreachable); 1: the databases' state. */
    readonly exitCode: 1 | 2 = 1,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export interface TableCopied {
  table: string;
  kind: TablePlan['kind'];
  /** Rows in the source's snapshot (copy, skip) or 0 (target). */
  source: number;
  /** Rows in the target after the copy, counted in the copy's transaction (copy tables). */
  target: number;
  why?: string;
}

export interface CopyResult {
  tables: TableCopied[];
  /** The source's installation id, now the target's. */
  installationId: string | undefined;
  elapsedMs: number;
}

export interface CopyOptions {
  sourcePath: string;
  targetUrl: string;
  /** Rows per INSERT (default 500; fewer for wide tables, PostgreSQL takes 65,535 parameters a statement). */
  batchRows?: number;
  /** Called once per table as it is done. */
  onTable?: (t: TableCopied) => void;
  /** Called every `progressRows` rows of a long table (default 100,000). */
  onProgress?: (table: string, rows: number) => void;
  progressRows?: number;
  /** The plan (tests only: the default is {@link COPY_PLAN}). */
  plan?: readonly TablePlan[];
}

const { DatabaseError } = pg;

const IDENT = /^[a-z_][a-z0-9_]*$/;
const q = (ident: string): string => {
  if (!IDENT.test(ident)) throw new CopyRefused(`unexpected table or column name ${JSON.stringify(ident)}`);
  return `"${ident}"`;
};

/** Tables of the SQLite database, without SQLite's own (sqlite_*). */
export function sqliteTables(db: Db): string[] {
  return (db.prepare(`SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name`).pluck().all() as string[]);
}

/** Base tables of the connection's current schema. */
export async function postgresTables(c: pg.ClientBase): Promise<string[]> {
  const r = await c.query<{ name: string }>(`SELECT table_name AS name FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY table_name`);
  return r.rows.map((x) => x.name);
}

/** Tables of a schema the plan does not name. */
export function unknownTables(tables: readonly string[], plan: readonly TablePlan[], side: 'source' | 'target'): string[] {
  // A skipped table may be in either schema (each engine's migration record, an ephemeral table); a target table only in PostgreSQL's.
  const known = new Set(plan.filter((p) => side === 'target' || p.kind !== 'target').map((p) => p.name));
  return tables.filter((t) => !known.has(t));
}

interface PgColumn {
  name: string;
  type: string;
  generated: boolean;
}

async function pgColumns(c: pg.ClientBase, table: string): Promise<PgColumn[]> {
  const r = await c.query<{ name: string; type: string; identity: string; def: string | null }>(
    `SELECT column_name AS name, data_type AS type, is_identity AS identity, column_default AS def
       FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position`,
    [table],
  );
  return r.rows.map((x) => ({ name: x.name, type: x.type, generated: x.identity === 'YES' || (x.def ?? '').startsWith('nextval(') }));
}

type Convert = (v: unknown) => unknown;

/** Source integers come as BigInt (no precision lost past 2^53): a number when it is safe. */
const plain = (v: unknown): unknown => (typeof v === 'bigint' && v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v);

const INTEGER_TYPES = new Set(['bigint', 'integer', 'smallint']);

/** How a SQLite value becomes the target column's (by the PostgreSQL type); throws for a value that does not fit. */
function converter(table: string, col: PgColumn): Convert {
  const bad = (v: unknown): never => {
    throw new CopyRefused(`${table}.${col.name}: the source holds a value of type ${typeof v === 'string' ? 'text' : typeof v} that does not fit PostgreSQL's ${col.type}`);
  };
  const typed = typedConverter(table, col, bad);
  return (v) => typed(plain(v));
}

function typedConverter(table: string, col: PgColumn, bad: (v: unknown) => never): Convert {
  if (INTEGER_TYPES.has(col.type)) {
    return (v) => {
      if (v === null) return null;
      if (typeof v === 'bigint') return v.toString();
      if (typeof v === 'number' && Number.isInteger(v)) return v;
      return bad(v);
    };
  }
  if (col.type === 'text' || col.type === 'character varying') return (v) => (v === null || typeof v === 'string' ? v : bad(v));
  if (col.type === 'boolean') return (v) => (v === null ? null : v === 0 || v === 1 ? v === 1 : bad(v));
  if (col.type === 'json' || col.type === 'jsonb') {
    return (v) => {
      if (v === null) return null;
      if (typeof v !== 'string') return bad(v);
      try {
        JSON.parse(v);
      } catch {
        return bad(v);
      }
      return v;
    };
  }
  if (col.type === 'bytea') return (v) => (v === null || Buffer.isBuffer(v) ? v : bad(v));
  if (col.type === 'double precision' || col.type === 'real' || col.type === 'numeric') return (v) => (v === null || typeof v === 'number' ? v : bad(v));
  throw new CopyRefused(`${table}.${col.name}: the copy has no conversion to PostgreSQL's ${col.type}; add one in src/storage/copy.ts`);
}

/** Refuses a target with a table the plan does not name, or with any row (the migrations' own aside). */
async function refuseUnlessEmpty(c: pg.ClientBase, tables: readonly string[], plan: readonly TablePlan[], shown: string): Promise<void> {
  const strangers = unknownTables(tables, plan, 'target');
  if (strangers.length > 0) {
    throw new CopyRefused(
      `the target has table(s) the copy does not know: ${strangers.join(', ')}. Another application's database? Copy only into a new, empty database; ` +
        'if a newer migration of this broker added them, name each in COPY_PLAN (src/storage/copy.ts)',
    );
  }
  const rank = (t: string) => plan.findIndex((p) => p.name === t);
  const busy = await firstNonEmpty(c, [...tables].sort((a, b) => rank(a) - rank(b)));
  if (busy) throw new CopyRefused(`the target database at ${shown} is not empty: table ${busy} has rows. Copy only into a new, empty database`);
}

/** Whether the target holds any row (the migrations' own rows aside): the first table that does. */
async function firstNonEmpty(c: pg.ClientBase, tables: readonly string[]): Promise<string | undefined> {
  for (const t of tables) {
    if (t === 'schema_migrations') continue;
    const own = MIGRATION_ROWS[t];
    const where = own ? ` WHERE ${q(own.column)} <> ALL($1::text[])` : '';
    const r = await c.query<{ any: boolean }>(`SELECT EXISTS (SELECT 1 FROM ${q(t)}${where}) AS any`, own ? [own.values] : []);
    if (r.rows[0]?.any) return t;
  }
  return undefined;
}

/**
 * Copies the SQLite database at `sourcePath` into the empty PostgreSQL
 * database at `targetUrl`:
 * 1. the source is opened (and brought to the current schema by its own
 *    migrations); a missing file is refused (exit 2), a table the plan does
 *    not name too (exit 1);
 * 2. the target is looked at: a table the plan does not name (another
 *    application's database) or any row refuses it untouched (exit 1); one
 *    that cannot be reached is refused (exit 2); then it is migrated by the
 *    PostgreSQL engine's own migrations;
 * 3. in ONE target transaction under the engine's write lock (no broker
 *    writes meanwhile) and ONE source read transaction (a consistent
 *    snapshot, whatever a broker still running on the source does): both
 *    schemas are checked against the plan, the target must be empty, every
 *    copy table is copied in batches in dependency order, identity
 *    sequences are set past the highest copied value, and every table's
 *    count is compared with the snapshot's;
 * 4. before COMMIT, the source must not have changed since its snapshot
 *    (PRAGMA data_version): a broker that wrote meanwhile would have its
 *    writes lost, so the copy is refused and the target left empty.
 * Anything that fails rolls the target back: it is empty again.
 */
export async function copySqliteToPostgres(o: CopyOptions): Promise<CopyResult> {
  const started = performance.now();
  const plan = o.plan ?? COPY_PLAN;
  const shown = shownDatabaseUrl(o.targetUrl);
  if (!existsSync(o.sourcePath) || !statSync(o.sourcePath).isFile()) {
    throw new CopyRefused(`the source database ${o.sourcePath} (JIT_DB) does not exist`, 2);
  }
  let db: Db;
  try {
    db = openDatabase(o.sourcePath);
  } catch (err) {
    throw new CopyRefused(`cannot open the source database ${o.sourcePath} (JIT_DB): ${(err as Error).message}`, 2, { cause: err });
  }
  try {
    const strangers = unknownTables(sqliteTables(db), plan, 'source');
    if (strangers.length > 0) {
      throw new CopyRefused(
        `the source has table(s) the copy does not know: ${strangers.join(', ')}. A newer migration added them; name each in COPY_PLAN (src/storage/copy.ts) as copied or skipped before copying`,
      );
    }
  } catch (err) {
    db.close();
    throw err;
  }
  const pool = createPool(o.targetUrl, { max: 1 });
  const unopened = (err: unknown) => new CopyRefused(`cannot open the target database at ${shown}: ${whyNotOpened(err)}`, 2, { cause: err });
  try {
    // Looked at before migrating, so that another application's database (or a used one) is refused untouched.
    let first: pg.PoolClient;
    try {
      first = await pool.connect();
    } catch (err) {
      throw unopened(err);
    }
    try {
      await refuseUnlessEmpty(first, await postgresTables(first), plan, shown);
    } catch (err) {
      first.release(true);
      if (err instanceof CopyRefused) throw err;
      throw unopened(err);
    }
    first.release();
    try {
      await migrate(pool);
    } catch (err) {
      throw unopened(err);
    }
    let client: pg.PoolClient;
    try {
      client = await pool.connect();
    } catch (err) {
      throw unopened(err);
    }
    try {
      return await copyIn(db, client, plan, o, shown, started);
    } catch (err) {
      const e = err instanceof CopyRefused ? err : pgStorageError(err, client);
      client.release(true);
      if (e instanceof StorageUnavailableError) throw new CopyRefused(`lost the target database at ${shown} during the copy (nothing was committed): ${whyNotOpened(err)}`, 2, { cause: err });
      throw e;
    }
  } finally {
    await pool.end().catch(() => {});
    db.close();
  }
}

async function copyIn(db: Db, client: pg.PoolClient, plan: readonly TablePlan[], o: CopyOptions, shown: string, started: number): Promise<CopyResult> {
  const version = () => db.pragma('data_version', { simple: true }) as number;
  // The write lock every broker's write transaction takes first: none writes while the copy runs.
  await client.query(`BEGIN; SELECT pg_advisory_xact_lock(${WRITE_LOCK_KEY})`);
  db.prepare('BEGIN').run();
  let committed = false;
  try {
    const sourceTables = sqliteTables(db); // the first read: the snapshot starts here
    // Read inside the snapshot; compared once it ended (a connection sees others' commits only between its transactions).
    const before = version();
    const strangers = unknownTables(sourceTables, plan, 'source');
    if (strangers.length > 0) {
      throw new CopyRefused(
        `the source has table(s) the copy does not know: ${strangers.join(', ')}. A newer migration added them; name each in COPY_PLAN (src/storage/copy.ts) as copied or skipped before copying`,
      );
    }
    const targetTables = await postgresTables(client);
    // Again, under the write lock: a broker may have started on the target meanwhile.
    await refuseUnlessEmpty(client, targetTables, plan, shown);

    const tables: TableCopied[] = [];
    for (const p of plan) {
      if (p.kind === 'skip') {
        const n = sourceTables.includes(p.name) ? countSqlite(db, p.name) : 0;
        const t: TableCopied = { table: p.name, kind: 'skip', source: n, target: 0, why: p.why };
        tables.push(t);
        o.onTable?.(t);
        continue;
      }
      if (p.kind === 'target') {
        const t: TableCopied = { table: p.name, kind: 'target', source: 0, target: 0, why: p.why };
        tables.push(t);
        o.onTable?.(t);
        continue;
      }
      if (!sourceTables.includes(p.name)) throw new CopyRefused(`the source has no table ${p.name} (COPY_PLAN names it to copy)`);
      if (!targetTables.includes(p.name)) throw new CopyRefused(`the target has no table ${p.name} after its migrations (COPY_PLAN names it to copy)`);
      const t = await copyTable(db, client, p, o.batchRows ?? 500, o.onProgress && { every: o.progressRows ?? 100_000, report: o.onProgress });
      tables.push(t);
      o.onTable?.(t);
    }
    for (const t of tables) {
      if (t.kind === 'copy' && t.source !== t.target) {
        throw new CopyRefused(`table ${t.table}: the source has ${t.source} rows, the target ${t.target} after the copy`);
      }
    }
    const installationId = (await client.query<{ value: string }>(`SELECT value FROM settings WHERE key = 'installation_id'`)).rows[0]?.value;
    db.prepare('COMMIT').run(); // the read transaction: ending it changes nothing
    if (version() !== before) {
      throw new CopyRefused('the source database changed during the copy (is a broker still running on it?); stop every broker using it, then copy again (the target was left empty)');
    }
    await client.query('COMMIT');
    committed = true;
    return { tables, installationId, elapsedMs: Math.round(performance.now() - started) };
  } finally {
    if (db.inTransaction) db.prepare('COMMIT').run();
    if (!committed) await client.query('ROLLBACK').catch(() => {});
    if (committed) client.release();
  }
}

function countSqlite(db: Db, table: string): number {
  return db.prepare(`SELECT COUNT(*) FROM ${q(table)}`).pluck().get() as number;
}

async function copyTable(db: Db, c: pg.PoolClient, p: Extract<TablePlan, { kind: 'copy' }>, batchRows: number, progress?: { every: number; report: (table: string, rows: number) => void }): Promise<TableCopied> {
  const table = p.name;
  const source = (db.prepare(`SELECT name FROM pragma_table_info(?) ORDER BY cid`).pluck().all(table) as string[]);
  const target = await pgColumns(c, table);
  const byName = new Map(target.map((col) => [col.name, col]));
  const missing = source.filter((s) => !byName.has(s));
  if (missing.length > 0) {
    throw new CopyRefused(`table ${table}: the source has column(s) ${missing.join(', ')} that the target lacks; add them to the PostgreSQL migrations (or name them in COPY_PLAN)`);
  }
  const generated = new Set(p.targetGenerated ?? []);
  const unfilled = target.filter((col) => !source.includes(col.name) && !generated.has(col.name));
  if (unfilled.length > 0) {
    throw new CopyRefused(`table ${table}: the target has column(s) ${unfilled.map((u) => u.name).join(', ')} that the source lacks; name them in COPY_PLAN (targetGenerated) if the target fills them`);
  }
  const convert = source.map((s) => converter(table, byName.get(s)!));
  if (p.replaceMigrationRows) await c.query(`DELETE FROM ${q(table)}`);

  const perBatch = Math.max(1, Math.min(batchRows, Math.floor(60_000 / source.length)));
  const head = `INSERT INTO ${q(table)} (${source.map(q).join(', ')}) VALUES `;
  const rows = db.prepare(`SELECT ${source.map(q).join(', ')} FROM ${q(table)} ORDER BY rowid`).raw(true).safeIntegers(true);
  let batch: unknown[] = [];
  let inBatch = 0;
  let copied = 0;
  const flush = async () => {
    if (inBatch === 0) return;
    const tuples: string[] = [];
    for (let r = 0; r < inBatch; r++) tuples.push(`(${source.map((_, i) => `$${r * source.length + i + 1}`).join(', ')})`);
    try {
      await c.query(head + tuples.join(', '), batch);
    } catch (err) {
      // A constraint of the target the source's rows break: say where (the server's message names the constraint, never a password).
      if (err instanceof DatabaseError) throw new CopyRefused(`table ${table}: PostgreSQL refused rows ${copied + 1}-${copied + inBatch}: ${err.message} (SQLSTATE ${err.code})`, 1, { cause: err });
      throw err;
    }
    if (progress && Math.floor((copied + inBatch) / progress.every) > Math.floor(copied / progress.every)) progress.report(table, copied + inBatch);
    copied += inBatch;
    batch = [];
    inBatch = 0;
  };
  for (const row of rows.iterate() as IterableIterator<unknown[]>) {
    for (let i = 0; i < row.length; i++) batch.push(convert[i]!(row[i]));
    if (++inBatch >= perBatch) await flush();
  }
  await flush();

  // Identity and serial columns: the next value past the highest copied (or generated) one.
  for (const col of target.filter((x) => x.generated)) {
    await c.query(`SELECT setval(pg_get_serial_sequence($1, $2), COALESCE((SELECT MAX(${q(col.name)}) FROM ${q(table)}), 0) + 1, false)`, [table, col.name]);
  }
  const n = countSqlite(db, table);
  const t = (await c.query<{ n: number }>(`SELECT COUNT(*)::bigint AS n FROM ${q(table)}`)).rows[0]!.n;
  if (copied !== n) throw new CopyRefused(`table ${table}: read ${copied} rows of ${n}`);
  return { table, kind: 'copy', source: n, target: Number(t) };
}

/** Rows of a copied table in a PostgreSQL storage (the verification after the copy). */
export async function countRows(storage: Storage, table: string): Promise<number> {
  const r = await postgresPool(storage).query<{ n: number }>(`SELECT COUNT(*)::bigint AS n FROM ${q(table)}`);
  return Number(r.rows[0]!.n);
}
