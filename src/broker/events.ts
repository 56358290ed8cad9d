import type { RequestRow } from './repository.ts';

/** Decision events pushed to the agent's session (SPEC §8). */
export const DECISION_EVENTS = ['approved', 'denied', 'timed_out', 'revoked', 'expired'] as const;
export type DecisionEventType = (typeof DECISION_EVENTS)[number];

/**
 * Receives every decision inside the transaction that made it, so a durable
 * outbox can write its event atomically with the state change. `record`
 * must be synchronous and use the same database connection.
 */
export interface DecisionSink {
  record(request: RequestRow, type: DecisionEventType, at: number): void;
}

export const noDecisionSink: DecisionSink = { record: () => {} };
