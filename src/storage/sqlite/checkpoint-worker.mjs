// The checkpointer's worker thread (started by checkpointer.ts). Plain
// JavaScript on purpose: the build copies it to dist/ as it is, and in a
// checkout running the sources through tsx (bin/jit.mjs) the loader is
// registered on the main thread only; it needs nothing but better-sqlite3.
//
// Every `intervalMs` it runs PASSIVE checkpoints (see tick) on its own
// connection to the broker's database, so the WAL's pages are copied into
// the database file (and the files fsynced) here instead of inside whichever
// request commits on the main thread. When the WAL file has grown past
// `truncateBytes` (readers pinned an old snapshot for a while), it also asks
// for one TRUNCATE checkpoint per interval so the file shrinks once readers
// allow.
import Database from 'better-sqlite3';
import { statSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';

const { dbPath, intervalMs, truncateBytes } = workerData;

// fileMustExist: the broker created the file (and put it in WAL mode); a
// wrong path must fail here, not create an empty database beside it.
const db = new Database(dbPath, { fileMustExist: true });
// Never wait: PASSIVE does not anyway, and a TRUNCATE that waited for
// readers would hold the write lock, stalling the main thread's writers.
db.pragma('busy_timeout = 0');

const walPath = `${dbPath}-wal`;

function walBytes() {
  try {
    return statSync(walPath).size;
  } catch {
    return 0; // no WAL file yet, or between a TRUNCATE and the next write
  }
}

/** SQLITE_BUSY / SQLITE_LOCKED (and their extended codes): try next interval. */
function isBusy(err) {
  return typeof err?.code === 'string' && /^SQLITE_(BUSY|LOCKED)/.test(err.code);
}

function checkpoint(mode) {
  try {
    const row = db.pragma(`wal_checkpoint(${mode})`)[0];
    return { busy: row.busy === 1, log: row.log, checkpointed: row.checkpointed };
  } catch (err) {
    if (isBusy(err)) return { busy: true, log: -1, checkpointed: -1 };
    throw err; // anything else ends the worker; the parent logs and restarts it
  }
}

/**
 * SQLite restarts the WAL from its start only at a commit that finds every
 * frame copied, so a checkpoint that commits overtook (or that stopped at a
 * reader's snapshot) leaves the file growing. While a pass made progress, run
 * another, each shorter than the last: one that finds nothing changed means
 * the WAL was complete in a gap between commits. Under back-to-back commits
 * that never happens; MAX_PASSES bounds the fsyncs, and the main
 * connection's backstop autocheckpoint restarts the WAL instead.
 */
const MAX_PASSES = 5;

function tick() {
  let passive = checkpoint('PASSIVE');
  for (let pass = 1; pass < MAX_PASSES && !passive.busy; pass++) {
    const next = checkpoint('PASSIVE');
    const unchanged = next.log === passive.log && next.checkpointed === passive.checkpointed;
    passive = next;
    if (unchanged) break;
  }
  let truncated = false;
  if (walBytes() > truncateBytes) truncated = !checkpoint('TRUNCATE').busy;
  parentPort.postMessage({ type: 'checkpoint', ...passive, truncated, walBytes: walBytes() });
}

const timer = setInterval(tick, intervalMs);

parentPort.on('message', (msg) => {
  if (msg?.type !== 'stop') return;
  clearInterval(timer);
  db.close();
  parentPort.close(); // nothing keeps the thread alive now: it exits
});

parentPort.postMessage({ type: 'ready' });
