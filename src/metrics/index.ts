/** Prometheus metrics: one registry per broker, and the hooks that feed it. */
export { createMetrics } from './metrics.ts';
export type { BrokerMetrics, MetricsOptions, OutboxFigures, RequestResource, WebhookOutcome } from './metrics.ts';
export { instrumentVault, metricsDecisionSink } from './instrument.ts';
