/**
 * A reverse proxy on 127.0.0.1 (free port) in front of the development
 * Vault that holds every request for `--delay-ms` before passing it on: a
 * stand-in for what a real Vault's calls cost (storage writes, audit
 * device, replication), which the in-memory development Vault does not
 * have. The benchmark puts the direct calls and the broker behind the same
 * proxy, so both pay the same per-call latency. Prints
 * `listening on http://127.0.0.1:PORT`; stops on SIGTERM.
 */
import { Agent, createServer, request } from 'node:http';
import { parseArgs } from 'node:util';

const { values } = parseArgs({ options: { upstream: { type: 'string' }, 'delay-ms': { type: 'string', default: '2' } } });
const upstream = new URL(values.upstream ?? '');
if (upstream.hostname !== '127.0.0.1') throw new Error('--upstream must be on 127.0.0.1');
const delayMs = Number(values['delay-ms']);
const agent = new Agent({ keepAlive: true, maxSockets: 256 });

const server = createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    setTimeout(() => {
      const up = request({ host: upstream.hostname, port: upstream.port, path: req.url, method: req.method, headers: req.headers, agent }, (ur) => {
        res.writeHead(ur.statusCode ?? 502, ur.headers);
        ur.pipe(res);
      });
      up.on('error', () => {
        res.writeHead(502).end();
      });
      up.end(Buffer.concat(chunks));
    }, delayMs);
  });
});
server.keepAliveTimeout = 30_000;
server.listen(0, '127.0.0.1', () => {
  const a = server.address() as { port: number };
  process.stdout.write(`listening on http://127.0.0.1:${a.port}\n`);
});
process.once('SIGTERM', () => {
  server.close();
  server.closeAllConnections();
  agent.destroy();
});
