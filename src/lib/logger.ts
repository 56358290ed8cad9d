import pino, { type Logger, type DestinationStream } from 'pino';

export type { Logger };

/**
 * Every field that can carry a secret, at any depth pino can express. The
 * values are replaced before serialisation; a test greps the output for the
 * secrets to prove it.
 */
export const REDACT_PATHS = [
  'token',
  'client_token',
  'secret',
  'secret_id',
  'password',
  'authorization',
  'credential',
  'signing_key',
  'botToken',
  '*.token',
  '*.client_token',
  '*.secret',
  '*.secret_id',
  '*.password',
  '*.authorization',
  '*.Authorization',
  '*.credential',
  '*.signing_key',
  '*.botToken',
  '*.hooksToken',
  '*.*.token',
  '*.*.client_token',
  '*.*.credential',
  '*.*.authorization',
  'req.headers.authorization',
  'req.headers["x-vault-token"]',
  'req.headers["x-telegram-bot-api-secret-token"]',
  'headers.authorization',
  'headers["x-vault-token"]',
];

/**
 * Token shapes that must never reach a log line even inside free text (an
 * error message quoting a header, say): agent tokens, Vault tokens and JWTs.
 */
const SECRET_PATTERNS = /\b(?:jit_[A-Za-z0-9]+_[A-Za-z0-9_-]{16,}|hv[sbr]\.[A-Za-z0-9_-]{8,}|eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,})/g;

/**
 * A console enrolment link's token (`/console/enrol/<token>`, single use for
 * 15 minutes): whoever reads it first registers their passkey as the
 * approver, so the access log's `path` keeps the route and drops the token.
 */
const ENROLMENT_LINK = /(\/console\/enrol\/)[A-Za-z0-9_-]+/g;

export function scrubSecrets(text: string): string {
  return text.replace(SECRET_PATTERNS, '[redacted]').replace(ENROLMENT_LINK, '$1[redacted]');
}

function scrubDeep(value: unknown, depth = 0): unknown {
  if (typeof value === 'string') return scrubSecrets(value);
  if (depth > 6 || value === null || typeof value !== 'object') return value;
  if (value instanceof Error) {
    return { type: value.name, message: scrubSecrets(value.message), ...(value.stack ? { stack: scrubSecrets(value.stack) } : {}) };
  }
  if (Array.isArray(value)) return value.map((v) => scrubDeep(v, depth + 1));
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, scrubDeep(v, depth + 1)]));
}

export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'jit-broker' },
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { log: (obj) => scrubDeep(obj) as Record<string, unknown> },
      hooks: {
        logMethod(args, method) {
          method.apply(this, args.map((a) => (typeof a === 'string' ? scrubSecrets(a) : a)) as Parameters<typeof method>);
        },
      },
    },
    destination,
  );
}
