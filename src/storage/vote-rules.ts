/**
 * The condition, in SQL both engines run, that leaves out the votes of a
 * removed approver (`votes.approver` = `approver:<id>` of an approver whose
 * `removed_at` is set): removing a person withdraws their approvals of
 * requests still pending, so a compromised approver's earlier vote cannot
 * help reach a quorum after their removal. Decided requests stay decided;
 * every vote stays in `votes.of()` and the audit log.
 */
export const STILL_AN_APPROVER = "AND NOT EXISTS (SELECT 1 FROM approvers a WHERE a.removed_at IS NOT NULL AND votes.approver = 'approver:' || a.id)";
