import type { DecisionSink } from '../storage/decision-sink.ts';

export { DECISION_EVENTS, type DecisionEventType } from '../wire/events.ts';
export type { DecisionSink } from '../storage/decision-sink.ts';

export const noDecisionSink: DecisionSink = { record: () => Promise.resolve() };
