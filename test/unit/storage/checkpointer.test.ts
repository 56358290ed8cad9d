import { closeSync, mkdtempSync, openSync, readSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startCheckpointer, type Checkpointer } from '../../../src/storage/sqlite/checkpointer.ts';
import { BACKGROUND_AUTOCHECKPOINT_PAGES, openDatabase, type Db } from '../../../src/storage/sqlite/open.ts';

const CRASH_ONCE_WORKER = new URL('./crash-once-worker.mjs', import.meta.url);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let dir: string;
let dbPath: string;
const open: Db[] = [];
const running: Checkpointer[] = [];

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'jit-ckpt-'));
  dbPath = join(dir, 'jit.db');
});
afterEach(async () => {
  for (const c of running.splice(0)) await c.stop();
  for (const db of open.splice(0)) db.close();
  rmSync(dir, { recursive: true, force: true });
});

function openDb(opts?: Parameters<typeof openDatabase>[1]): Db {
  const db = openDatabase(dbPath, opts);
  open.push(db);
  db.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, k TEXT NOT NULL UNIQUE, status TEXT NOT NULL, body TEXT NOT NULL) STRICT');
  return db;
}

function start(opts: Partial<Parameters<typeof startCheckpointer>[0]> = {}): Checkpointer {
  const c = startCheckpointer({ dbPath, intervalMs: 10, ...opts });
  running.push(c);
  return c;
}

/** An insert and an update in one transaction, like the issue path. */
function committer(db: Db): (i: number) => void {
  const ins = db.prepare("INSERT INTO t (k, status, body) VALUES (?, 'pending', ?)");
  const upd = db.prepare("UPDATE t SET status = 'issued' WHERE k = ?");
  return db.transaction((i: number) => {
    ins.run(`k${i}`, 'x'.repeat(200));
    upd.run(`k${i}`);
  });
}

/** WAL frames the file has room for (its high-water mark; SQLite reuses it from the start after a checkpoint). */
function walFrames(db: Db): number {
  let size = 0;
  try {
    size = statSync(`${dbPath}-wal`).size;
  } catch {
    // no WAL yet
  }
  return Math.max(0, Math.floor((size - 32) / ((db.pragma('page_size', { simple: true }) as number) + 24)));
}

/** Salt-1 and salt-2 of the WAL header: they change whenever SQLite restarts the WAL from its start. */
function walSalt(): string {
  const fd = openSync(`${dbPath}-wal`, 'r');
  try {
    const buf = Buffer.alloc(8);
    readSync(fd, buf, 0, 8, 16);
    return buf.toString('hex');
  } finally {
    closeSync(fd);
  }
}

async function until(cond: () => boolean, what: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

describe('openDatabase checkpoint option', () => {
  it('keeps SQLite\'s automatic checkpoint by default and raises it to a backstop in background mode', () => {
    const auto = openDb();
    expect(auto.pragma('wal_autocheckpoint', { simple: true })).toBe(1000);
    const bg = openDatabase(join(dir, 'bg.db'), { checkpoint: 'background' });
    open.push(bg);
    expect(bg.pragma('wal_autocheckpoint', { simple: true })).toBe(BACKGROUND_AUTOCHECKPOINT_PAGES);
    for (const db of [auto, bg]) {
      expect(db.pragma('cache_size', { simple: true })).toBe(-16000);
      expect(db.pragma('temp_store', { simple: true })).toBe(2); // MEMORY
      expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
    }
  });

  it('in background mode commits do not checkpoint at 1,000 pages; the backstop still bounds the WAL', () => {
    const db = openDb({ checkpoint: 'background' });
    const commit = committer(db);
    for (let i = 0; i < 2000; i++) commit(i);
    const frames = walFrames(db);
    expect(frames).toBeGreaterThan(2000);
    expect(frames).toBeLessThan(BACKGROUND_AUTOCHECKPOINT_PAGES + 100);
  });

  it('by default commits checkpoint every 1,000 pages (the WAL stays near 1,000 frames)', () => {
    const db = openDb();
    const commit = committer(db);
    for (let i = 0; i < 2000; i++) commit(i);
    expect(walFrames(db)).toBeLessThan(1100);
  });
});

describe('startCheckpointer', () => {
  it('keeps the WAL bounded across 5,000 commits while the main connection never checkpoints', async () => {
    const db = openDb({ checkpoint: 'background' });
    const c = start();
    await until(() => c.stats.checkpoints > 0, 'the first checkpoint');
    const commit = committer(db);
    let n = 0;
    let maxFrames = 0;
    let restartsSeen = 0;
    // SQLite can restart the WAL from its start only at a commit that finds
    // every frame copied into the database, so a checkpoint must finish
    // between two commits: a server has such gaps, a tight loop does not.
    // Commit in batches of 500 (≈ 1,150 WAL pages); after each, keep
    // committing one row every 10 ms until the worker's checkpoint has let a
    // commit restart the WAL (its salt changes). Without the worker that
    // takes until the 10,000-page backstop.
    for (let batch = 0; batch < 10; batch++) {
      for (let i = 0; i < 500; i++) commit(n++);
      maxFrames = Math.max(maxFrames, walFrames(db));
      const salt = walSalt();
      await until(() => {
        commit(n++);
        return walSalt() !== salt;
      }, 'a checkpoint that lets the WAL restart');
      restartsSeen++;
    }
    maxFrames = Math.max(maxFrames, walFrames(db));
    // 5,000 commits without a checkpoint are > 10,000 frames (≈ 2.3 pages
    // a commit; the test above shows the main connection takes none at 1,000).
    expect(maxFrames).toBeLessThan(2000);
    expect(restartsSeen).toBe(10);
    expect(c.stats.restarts).toBe(0);
    expect(db.prepare('SELECT count(*) FROM t').pluck().get()).toBe(n);
  });

  it('shrinks a WAL over truncateBytes with a TRUNCATE checkpoint', async () => {
    const db = openDb({ checkpoint: 'background' });
    const commit = committer(db);
    for (let i = 0; i < 1000; i++) commit(i);
    expect(statSync(`${dbPath}-wal`).size).toBeGreaterThan(1024 * 1024);
    const c = start({ truncateBytes: 1024 * 1024 });
    await until(() => c.stats.truncations > 0, 'a TRUNCATE checkpoint');
    expect(statSync(`${dbPath}-wal`).size).toBeLessThan(1024 * 1024);
    commit(1000);
    expect(db.prepare('SELECT count(*) FROM t').pluck().get()).toBe(1001);
  });

  it('stop() ends the worker and is idempotent', async () => {
    openDb({ checkpoint: 'background' });
    const c = start();
    expect(c.threadId).toBeTypeOf('number');
    await until(() => c.stats.checkpoints > 0, 'the first checkpoint');
    const first = c.stop();
    expect(c.stop()).toBe(first);
    await first;
    expect(c.threadId).toBeUndefined();
    await c.stop();
    const after = c.stats.checkpoints;
    await sleep(100);
    expect(c.stats.checkpoints).toBe(after);
  });

  it('stop() right after start does not leave a worker behind', async () => {
    openDb({ checkpoint: 'background' });
    const c = start();
    await c.stop();
    expect(c.threadId).toBeUndefined();
  });

  it('restarts a worker that died and keeps checkpointing', async () => {
    openDb({ checkpoint: 'background' });
    const logged: string[] = [];
    const log = { warn: (_o: object, msg: string) => void logged.push(`warn ${msg}`), error: (_o: object, msg: string) => void logged.push(`error ${msg}`) };
    const c = start({ workerUrl: CRASH_ONCE_WORKER, restartDelayMs: 10, log: log as never });
    const firstThread = c.threadId;
    await until(() => c.stats.restarts === 1 && c.threadId !== undefined, 'a restarted worker');
    expect(c.threadId).not.toBe(firstThread);
    const before = c.stats.checkpoints;
    await until(() => c.stats.checkpoints > before + 3, 'checkpoints from the new worker');
    expect(logged).toContain('error WAL checkpointer worker failed');
    expect(logged.some((l) => l.startsWith('warn WAL checkpointer worker exited; restarting'))).toBe(true);
    await c.stop();
    expect(c.threadId).toBeUndefined();
  });

  it('gives up after maxRestarts and leaves the process running', async () => {
    dbPath = join(dir, 'always-crash.db');
    openDb({ checkpoint: 'background' });
    const errors: string[] = [];
    const log = { warn: () => {}, error: (_o: object, msg: string) => void errors.push(msg) };
    const c = start({ workerUrl: CRASH_ONCE_WORKER, restartDelayMs: 10, maxRestarts: 2, log: log as never });
    await until(() => errors.some((m) => m.includes('not restarting')), 'the checkpointer to give up');
    expect(c.stats.restarts).toBe(2);
    expect(c.threadId).toBeUndefined();
    await sleep(100);
    expect(c.stats.restarts).toBe(2);
    await c.stop();
  });

  it('is a no-op for an in-memory database', async () => {
    const c = startCheckpointer({ dbPath: ':memory:' });
    expect(c.threadId).toBeUndefined();
    await c.stop();
  });
});
