-- Due outbox rows per target URL. The dispatcher gives each receiver at most
-- a share of its parallel deliveries, so it looks for due rows target by
-- target (the oldest first within each): a long backlog for one receiver,
-- say a hung one whose share is taken, is never read through to find
-- another receiver's rows. Replaces the index on next_attempt_at alone,
-- which only that lookup used.
DROP INDEX webhook_outbox_due;
CREATE INDEX webhook_outbox_target_due ON webhook_outbox (url, next_attempt_at) WHERE state = 'pending';
