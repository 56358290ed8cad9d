-- As SQLite's 0020_console_session_expiry.sql: the lifecycle sweep deletes
-- console sessions idle or past their absolute timeout through these.
CREATE INDEX console_sessions_last_seen ON console_sessions (last_seen_at);
CREATE INDEX console_sessions_created ON console_sessions (created_at);
