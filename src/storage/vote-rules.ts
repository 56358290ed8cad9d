/**
 * The condition, in SQL both engines run, that leaves out the votes of a
 * removed approver (`votes.approver` = `approver:<id>` of an approver whose
 * `removed_at` is set): removing a person withdraws their approvals of
 * requests still pending, so a compromised approver's earlier vote cannot
 * help reach a quorum after their removal. Decided requests stay decided;
 * every vote stays in `votes.of()` and the audit log. The approver is found
 * by primary key (`substr` after the 9 characters of `approver:`).
 */
export const STILL_AN_APPROVER =
  "AND NOT (votes.approver LIKE 'approver:%' AND EXISTS (SELECT 1 FROM approvers a WHERE a.id = substr(votes.approver, 10) AND a.removed_at IS NOT NULL))";
