/**
 * The operator's identity from the shell (SPEC §3, §11): the approver of
 * `jit approve`/`jit deny` and the actor of every revocation, key change and
 * webhook requeue made with the CLI.
 */
export const CLI_ACTOR = 'local-cli';
