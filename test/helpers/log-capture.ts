import { Writable } from 'node:stream';
import { createLogger, type Logger } from '../../src/lib/logger.ts';

/** A debug logger whose lines are kept in memory: `text()` is everything written so far (for the no-secret-in-logs checks). */
export function captureLog(): { log: Logger; text: () => string } {
  let written = '';
  const sink = new Writable({
    write(chunk, _enc, cb) {
      written += chunk.toString();
      cb();
    },
  });
  return { log: createLogger('debug', sink), text: () => written };
}
