// Preload for the broker under benchmark (BENCH_SQL_COUNT=DIR, see
// processes.ts): counts every better-sqlite3 statement run by its SQL text
// and, when the process exits, writes DIR/<pid>.txt with each statement's
// count per tier-1 request (per `INSERT INTO requests`). Wrapping every
// statement costs time: don't read CPU figures from such a run.
import { writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';

const require = createRequire(process.argv[1] ?? import.meta.url);
const Database = require('better-sqlite3');
const dir = process.env.BENCH_SQL_COUNT;
const probe = new Database(':memory:');
const Statement = Object.getPrototypeOf(probe.prepare('SELECT 1'));
probe.close();
const counts = new Map();
const count = (key) => counts.set(key, (counts.get(key) ?? 0) + 1);
for (const method of ['run', 'get', 'all', 'iterate']) {
  const original = Statement[method];
  Statement[method] = function (...args) {
    count(this.source.replace(/\s+/g, ' ').slice(0, 100));
    return original.apply(this, args);
  };
}
const exec = Database.prototype.exec;
Database.prototype.exec = function (sql) {
  count(`exec: ${sql.replace(/\s+/g, ' ').slice(0, 94)}`);
  return exec.call(this, sql);
};
const pragma = Database.prototype.pragma;
Database.prototype.pragma = function (source, ...rest) {
  count(`PRAGMA ${source}`);
  return pragma.call(this, source, ...rest);
};

process.on('exit', () => {
  if (!dir) return;
  const requests = [...counts].find(([sql]) => /^INSERT INTO requests\b/i.test(sql))?.[1] ?? 0;
  const lines = [...counts].sort((a, b) => b[1] - a[1]).map(([sql, n]) => `${(requests ? n / requests : n).toFixed(2).padStart(8)}  ${sql}`);
  writeFileSync(join(dir, `${process.pid}.txt`), `${requests} requests inserted; statements per request:\n${lines.join('\n')}\n`);
});
