-- Telegram approval messages: which chat message shows which request and
-- what it showed last. The bot's sync loop posts one message per pending
-- tier-2/3 request and edits it whenever the request changes, driven only
-- by this table and `requests`, so restarts and Telegram outages lose
-- nothing. No foreign key to `requests`: a future retention job may prune
-- requests, and a stale row here is harmless.
CREATE TABLE telegram_messages (
  request_id      TEXT PRIMARY KEY,
  chat_id         TEXT NOT NULL,
  -- NULL while a post is claimed (claim_token, claimed_at) but not yet
  -- confirmed by Telegram; a claim older than the lease may be taken over.
  message_id      INTEGER,
  claim_token     TEXT,
  claimed_at      INTEGER,
  rendered_status TEXT,
  -- sha256 of the text and keyboard last sent; NULL forces a re-render.
  rendered_hash   TEXT,
  -- 1 once a final state (denied, timed out, expired, revoked, failed) is shown.
  settled         INTEGER NOT NULL DEFAULT 0 CHECK (settled IN (0, 1)),
  posted_at       INTEGER,
  edited_at       INTEGER
) STRICT;

CREATE INDEX telegram_messages_unsettled ON telegram_messages (posted_at) WHERE settled = 0;

-- Display names of Telegram approvers, so messages say "Alice (telegram:111)".
CREATE TABLE telegram_users (
  identity    TEXT PRIMARY KEY,   -- telegram:<user id>
  name        TEXT NOT NULL,
  updated_at  INTEGER NOT NULL
) STRICT;
