// A checkpointer worker for checkpointer.test.ts: the real worker, except
// that the first one started for a database throws shortly after starting
// (it leaves a marker file beside the database so its replacements do not).
// With `always-crash` in the database path every one of them throws.
import { existsSync, writeFileSync } from 'node:fs';
import { workerData } from 'node:worker_threads';
import '../../../src/storage/sqlite/checkpoint-worker.mjs';

const marker = `${workerData.dbPath}.crashed`;
if (workerData.dbPath.includes('always-crash') || !existsSync(marker)) {
  writeFileSync(marker, '');
  setTimeout(() => {
    throw new Error('checkpointer test crash');
  }, 30);
}
