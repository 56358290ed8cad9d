import { Writable } from 'node:stream';
import { createLogger, type Logger } from '../../src/lib/logger.ts';

/** A pino logger writing into a string, for greps (the no-secret-in-logs checks): `text()` is everything written so far. */
export function captureLogger(level = 'debug'): { log: Logger; text: () => string } {
  let written = '';
  const sink = new Writable({
    write(chunk, _enc, cb) {
      written += chunk.toString();
      cb();
    },
  });
  return { log: createLogger(level, sink), text: () => written };
}
