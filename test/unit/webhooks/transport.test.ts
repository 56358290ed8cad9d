import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createHttpTransport } from '../../../src/webhooks/transport.ts';

let server: Server;
let url: string;
let connections: number;
let handler: (req: IncomingMessage, res: ServerResponse) => void;
const transport = createHttpTransport();

beforeEach(async () => {
  connections = 0;
  handler = (req, res) => {
    req.resume();
    req.on('end', () => res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}'));
  };
  server = createServer((req, res) => handler(req, res));
  server.on('connection', () => connections++);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/events`;
});
afterEach(async () => {
  transport.close();
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

const post = (body = '{"type":"jit.request.approved"}', signal = new AbortController().signal) =>
  transport({ url, method: 'POST', headers: { 'content-type': 'application/json', 'webhook-id': 'evt_1' }, body, signal });

describe('webhook HTTP transport', () => {
  it('sends the body and headers as given, and reuses one keep-alive connection', async () => {
    const seen: { headers: IncomingMessage['headers']; body: string }[] = [];
    handler = (req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        seen.push({ headers: req.headers, body });
        res.writeHead(204).end();
      });
    };
    for (let i = 0; i < 20; i++) expect((await post(`{"n":${i},"é":"ü"}`)).status).toBe(204);
    expect(connections).toBe(1);
    expect(seen[3]).toMatchObject({ body: '{"n":3,"é":"ü"}', headers: { 'webhook-id': 'evt_1', 'content-type': 'application/json', 'content-length': String(Buffer.byteLength('{"n":3,"é":"ü"}')) } });
  });

  it('returns a redirect as it is, without following it', async () => {
    let hits = 0;
    handler = (req, res) => {
      hits++;
      req.resume();
      res.writeHead(307, { location: '/elsewhere' }).end();
    };
    const res = await post();
    expect(res.status).toBe(307);
    expect(res.headers.get('location')).toBe('/elsewhere');
    expect(hits).toBe(1);
  });

  it('keeps the first 2 KiB of a response body and reads headers such as Retry-After', async () => {
    handler = (req, res) => {
      req.resume();
      res.writeHead(503, { 'retry-after': '120' });
      res.write('x'.repeat(1500));
      res.write('y'.repeat(1500));
      // Never ends: the transport must not wait for the rest.
    };
    const res = await post();
    expect(res.status).toBe(503);
    expect(res.headers.get('Retry-After')).toBe('120');
    expect(res.headers.get('x-missing')).toBeNull();
    expect(res.body).toBe('x'.repeat(1500) + 'y'.repeat(548));
  });

  it('rejects when aborted, and on a connection closed mid-response', async () => {
    handler = () => {}; // never answers
    const controller = new AbortController();
    const pending = post(undefined, controller.signal);
    setTimeout(() => controller.abort(new Error('no response within 50 ms')), 50);
    await expect(pending).rejects.toThrow();

    handler = (req, res) => {
      req.resume();
      res.writeHead(200, { 'content-length': '100' });
      res.write('partial');
      setTimeout(() => req.socket.destroy(), 10);
    };
    await expect(post()).rejects.toThrow();
  });

  it('rejects a URL that is not http or https', async () => {
    await expect(transport({ url: 'ftp://127.0.0.1/x', method: 'POST', headers: {}, body: '', signal: new AbortController().signal })).rejects.toThrow(/unsupported URL scheme/);
  });
});
