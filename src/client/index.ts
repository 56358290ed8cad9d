/**
 * The agent side of jit-broker: a typed client for the agent endpoints.
 * It depends on nothing at run time but Node itself.
 */
export { JitClient, parseRetryAfter, type CallOptions, type JitClientOptions, type RequestCallOptions, type WaitOptions, type WaitProgress } from './jit-client.ts';
export { describeRequest, describeScope } from './describe.ts';
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
  JitUnauthorizedError,
  JitUnavailableError,
  JitUnreachableError,
  JitWaitTimeoutError,
  apiErrorFor,
  type JitApiErrorKind,
  type Problem,
} from './errors.ts';
export type * from './types.ts';
