/**
 * The agent side of jit-broker: a typed client for the agent endpoints.
 * It depends at run time on Node and eventsource-parser (zod types only).
 */
export { JitClient, parseRetryAfter, type CallOptions, type JitClientOptions, type RequestCallOptions, type WaitOptions, type WaitProgress } from './jit-client.ts';
export { describeDecision, describeRequest, describeScope } from './describe.ts';
export { ClientConfigError, DEFAULT_JIT_URL, jitClientFromEnv } from './env.ts';
export {
  JitApiError,
  JitBadRequestError,
  JitConflictError,
  JitError,
  JitGoneError,
  JitNotFoundError,
  JitOptionError,
  JitPolicyDeniedError,
  JitRateLimitedError,
  JitStreamLostError,
  JitUnauthorizedError,
  JitUnavailableError,
  JitUnreachableError,
  JitWaitTimeoutError,
  apiErrorFor,
  type JitApiErrorKind,
  type Problem,
} from './errors.ts';
export type * from './types.ts';
