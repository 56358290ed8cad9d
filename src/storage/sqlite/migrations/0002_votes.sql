-- Approval votes. One row per approver per request: a second tap by the
-- same approver cannot count twice (tier 3 quorum counts distinct rows).
CREATE TABLE votes (
  request_id  TEXT NOT NULL REFERENCES requests (id),
  approver    TEXT NOT NULL,
  decision    TEXT NOT NULL CHECK (decision IN ('approve', 'deny')),
  reason      TEXT,
  at          INTEGER NOT NULL,
  PRIMARY KEY (request_id, approver)
) STRICT;
