import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { verifyAuditChain } from '../../broker/audit.ts';
import { loadConfig, type Config } from '../../config/config.ts';
import { KEY_FILE_NAME, KeyRingError, createKeyRing, type Jwks } from '../../keys/key-ring.ts';
import { copyKeyFileToDatabase } from '../../keys/key-ring-db.ts';
import { CopyRefused, copySqliteToPostgres, countRows, type TableCopied } from '../../storage/copy.ts';
import { openStorage } from '../../storage/index.ts';
import type { Storage } from '../../storage/storage.ts';
import { openPostgresStorage } from '../../storage/postgres/index.ts';
import { shownDatabaseUrl, whyNotOpened } from '../../storage/postgres/pool.ts';
import { StorageOpenError } from '../../storage/errors.ts';
import { UsageError, parseCommandArgs } from '../../lib/cli-args.ts';
import type { CliIo } from '../../lib/cli-io.ts';

const USAGE = 'jit db copy --to postgres://USER:PASSWORD@HOST:PORT/DB';

/**
 * `jit db copy --to URL`: moves an install from SQLite (JIT_DB) to an empty
 * PostgreSQL database, then verifies the target: row counts per table and
 * the audit chain (the broker's own verification, signed heads included).
 * Every line it prints shows the URL without its user, password or query,
 * and any text that would still carry the password is masked.
 */
export async function dbCommand(args: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseCommandArgs(args, { to: { type: 'string' } }, USAGE);
  if (values.help) return (io.out(`usage: ${USAGE}`), 0);
  const [sub, ...extra] = positionals;
  if (sub !== 'copy' || extra.length > 0) throw new UsageError(`usage: ${USAGE}`);
  const to = values.to as string | undefined;
  if (!to) throw new UsageError(`--to is required\nusage: ${USAGE}`);
  const masked = masking(to, io);
  if (!isPostgresUrl(to)) {
    // The value is not repeated: it may hold a password.
    masked.err('jit db: --to must be a postgres:// or postgresql:// URL with a host, such as postgres://jit:PASSWORD@db.internal:5432/jit');
    return 2;
  }
  try {
    return await copy(to, masked);
  } catch (err) {
    if (err instanceof CopyRefused) {
      masked.err(`jit db: ${err.message}`);
      return err.exitCode;
    }
    // Anything else goes to jit's own handling (a configuration error is exit 2), its message masked first.
    if (err instanceof Error) err.message = masked.mask(err.message);
    throw err;
  }
}

async function copy(to: string, io: CliIo): Promise<number> {
  const config = loadConfig(io.env);
  const shown = shownDatabaseUrl(to);
  if (config.databaseUrl) {
    io.err(
      `jit db: JIT_DATABASE_URL is set (${shownDatabaseUrl(config.databaseUrl)}), so this environment's broker reads PostgreSQL, not JIT_DB; ` +
        'run the copy with JIT_DATABASE_URL unset and JIT_DB naming the SQLite database to move',
    );
    return 2;
  }
  const source = config.dbPath;
  if (!existsSync(source) || !statSync(source).isFile()) {
    io.err(`jit db: the source database ${source} (JIT_DB) does not exist`);
    return 2;
  }
  if (!config.keyEncryptionKey) {
    io.err(
      'jit db: set JIT_KEY_ENCRYPTION_KEY (or JIT_KEY_ENCRYPTION_KEY_FILE) for the copy: on PostgreSQL the signing keys live in the database, ' +
        'sealed under that key, and every broker on the new database needs the same one (docs/operations.md, "Signing keys on PostgreSQL")',
    );
    return 2;
  }
  const running = await runningBroker(config);
  if (running) {
    io.err(`jit db: a broker seems to be running on ${source} (pid ${running}, recorded at its start); stop it first, so that nothing it writes after the copy is lost`);
    return 1;
  }

  io.out(`copying ${source} to ${shown}`);
  const result = await copySqliteToPostgres({ sourcePath: source, targetUrl: to, onTable: (t) => io.out(tableLine(t)), onProgress: (table, n) => io.err(`… ${table}: ${n} rows copied`) });
  const copied = result.tables.filter((t) => t.kind === 'copy');
  const rows = copied.reduce((n, t) => n + t.target, 0);
  io.out(`copied ${rows} rows in ${copied.length} tables in ${(result.elapsedMs / 1000).toFixed(1)} s; installation id ${result.installationId ?? '(none)'} kept`);

  // Verification on the target, by the broker's own code, through the PostgreSQL engine a broker would use.
  let target: Storage;
  try {
    target = await openPostgresStorage(to);
  } catch (err) {
    if (!(err instanceof StorageOpenError)) throw err;
    io.err(`jit db: copied, but the target could not be opened again to verify it (${whyNotOpened(err)}); verify it with "jit audit verify" and JIT_DATABASE_URL set before starting brokers on it`);
    return 1;
  }
  let ok: boolean;
  try {
    await copySigningKeys(config, target, io);
    const counts = await Promise.all(copied.map(async (t) => ({ t, n: await countRows(target, t.table) })));
    const off = counts.filter((c) => c.n !== c.t.source);
    if (off.length > 0) for (const c of off) io.err(`verify: table ${c.t.table}: source ${c.t.source} rows, target ${c.n}`);
    else io.out(`verify: row counts match the source in all ${copied.length} tables`);
    const jwks = headKeys(config, io);
    const verdict = await verifyAuditChain(target, { jwks, onProgress: (n) => io.err(`… ${n} entries verified`) });
    if (verdict.ok) {
      io.out(`verify: audit chain intact on the target: ${verdict.entries} entries, ${verdict.heads.checked} signed head${verdict.heads.checked === 1 ? '' : 's'} checked${verdict.heads.unchecked ? ` (${verdict.heads.unchecked} signed with keys not in the ring)` : ''}`);
    } else {
      io.err(`verify: audit chain on the target FAILED at entry ${verdict.seq}: ${verdict.problem}`);
      io.err(await sourceChain(config, jwks));
    }
    ok = off.length === 0 && verdict.ok;
  } finally {
    await target.close();
  }
  if (!ok) {
    io.err(`jit db: the copy in ${shown} did not verify; do not start brokers on it. Drop and re-create that database before copying again`);
    return 1;
  }
  io.out(`done: set JIT_DATABASE_URL to this database and start the brokers (docs/operations.md, "Moving to PostgreSQL")`);
  return 0;
}

/** Whether the source's own chain verifies: tells a faithful copy of a broken chain from a broken copy. */
async function sourceChain(config: Config, jwks: Jwks): Promise<string> {
  const source = await openStorage({ dbPath: config.dbPath });
  try {
    const verdict = await verifyAuditChain(source, { jwks });
    return verdict.ok
      ? `verify: the source's chain is intact (${verdict.entries} entries): the copy differs from it`
      : `verify: the source's chain fails too, at entry ${verdict.seq} (${verdict.problem}): the copy is faithful; see "jit audit verify" in docs/security.md`;
  } finally {
    await source.close();
  }
}

/**
 * HOOK (signing keys), called once, right after the rows are committed, with
 * the target open. With SQLite the key ring is signing-keys.json next to
 * JIT_DB. Until the ring lives in the database, brokers on PostgreSQL read
 * a key file beside their own JIT_DB, and this only says so. When the
 * database ring lands (src/keys, sealed under JIT_KEY_ENCRYPTION_KEY), this
 * seals the file into the target's empty ring instead, e.g.
 * `n = await copyKeyFileToDatabase({ dbPath: config.dbPath, store: target.…, keyEncryptionKey: …, now })`
 * and prints `signing keys: n copied, sealed`; its tables then go in
 * COPY_PLAN (src/storage/copy.ts) as the target's own.
 */
/** The key file beside the SQLite database, sealed into the target's (empty) key ring under the KEK. */
async function copySigningKeys(config: Config, target: Storage, io: CliIo): Promise<void> {
  const store = target.signingKeys;
  if (!store || !config.keyEncryptionKey) throw new Error('jit db: the target has no key ring store or no key-encryption key'); // checked before the copy
  const n = await copyKeyFileToDatabase({ dbPath: config.dbPath, store, keyEncryptionKey: config.keyEncryptionKey, now: Date.now() });
  io.out(n > 0 ? `signing keys: ${n} sealed into the target's key ring under JIT_KEY_ENCRYPTION_KEY` : 'signing keys: no key file beside the source; the first broker on the target generates the ring');
}

/** The public keys the copied signed heads are checked with: the source's key ring, read only. */
function headKeys(config: Config, io: CliIo): Jwks {
  try {
    return createKeyRing({ config, readOnly: true }).jwks();
  } catch (err) {
    if (!(err instanceof KeyRingError)) throw err;
    io.err(`note: signed heads cannot be checked: ${err.message}`);
    return { keys: [] };
  }
}

/**
 * The pid the last `jit serve` on the source recorded, when that process is
 * still alive on this host and looks like node (a pid reused by something
 * else is not a broker).
 */
async function runningBroker(config: Config): Promise<number | undefined> {
  const storage = await openStorage({ dbPath: config.dbPath });
  let pid: number | undefined;
  try {
    pid = (await storage.settings.readService())?.pid;
  } finally {
    await storage.close();
  }
  if (!pid || pid === process.pid) return undefined;
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return undefined;
  }
  try {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    if (!/node|jit/.test(cmdline)) return undefined;
  } catch {
    /* no /proc (not Linux) or not readable: take the live pid as the broker */
  }
  return pid;
}

function tableLine(t: TableCopied): string {
  const name = t.table.padEnd(20);
  if (t.kind === 'skip') return `${name} skipped (${t.source} ${t.source === 1 ? 'row' : 'rows'}): ${t.why}`;
  if (t.kind === 'target') return `${name} not in the source: ${t.why}`;
  return `${name} ${String(t.target).padStart(8)} ${t.target === 1 ? 'row' : 'rows'} (source ${t.source})`;
}

function isPostgresUrl(v: string): boolean {
  try {
    const u = new URL(v);
    return (u.protocol === 'postgres:' || u.protocol === 'postgresql:') && (u.hostname !== '' || u.searchParams.has('host'));
  } catch {
    return false;
  }
}

/**
 * The io with the URL's password masked in every line (stdout and stderr),
 * as written and URL-decoded: a safety net under the messages, which
 * already show the URL without it.
 */
function masking(url: string, io: CliIo): CliIo & { mask(line: string): string } {
  const secrets: string[] = [];
  try {
    const u = new URL(url);
    for (const s of [u.password, safeDecode(u.password), u.searchParams.get('password') ?? '']) if (s.length >= 3 && !secrets.includes(s)) secrets.push(s);
  } catch {
    /* not a URL: nothing to find in it */
  }
  const mask = (line: string) => secrets.reduce((l, s) => l.split(s).join('***'), line);
  return { env: io.env, out: (l) => io.out(mask(l)), err: (l) => io.err(mask(l)), mask };
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}
