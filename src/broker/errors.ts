import { ERROR_CODES, type ErrorCode } from '../wire/error-codes.ts';

/** The registry and the problem+json rendering live in the wire contract; re-exported for the broker's callers. */
export { ERROR_CODES, problemBody, type ErrorCode } from '../wire/error-codes.ts';

/** An expected failure that maps to one HTTP problem. Messages never contain secrets. */
export class BrokerError extends Error {
  readonly status: number;
  readonly title: string;
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly extra: { retryAfterSeconds?: number; fields?: Record<string, unknown> } = {},
  ) {
    super(message);
    this.name = 'BrokerError';
    this.status = ERROR_CODES[code].status;
    this.title = ERROR_CODES[code].title;
  }
}

export const notFound = (what: string) => new BrokerError('NOT_FOUND', `${what} not found`);
export const conflict = (msg: string) => new BrokerError('CONFLICT', msg);
export const badRequest = (msg: string) => new BrokerError('BAD_REQUEST', msg);

