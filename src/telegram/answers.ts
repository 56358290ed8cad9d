import type { DecideOutcome } from '../broker/decide.ts';
import { describeDifference, grantDifference, requestedGrant } from '../broker/narrowing.ts';
import { cut } from './html.ts';
import { approverLabel } from './render.ts';

/** The callback answer for each outcome of decideRequest (at most 200 characters, Telegram's limit). */
export function answerFor(result: DecideOutcome, names?: ReadonlyMap<string, string>): string {
  const by = (ids: string | null) => (ids ? ids.split(', ').map((id) => approverLabel(id, names)).join(', ') : 'someone');
  let text: string;
  switch (result.outcome) {
    case 'approved': {
      const base = result.request.required_tier === 3 ? 'Approved (quorum reached, tier 3)' : 'Approved';
      text = result.narrowed ? `${base}, narrowed. Not granted: ${describeDifference(grantDifference(requestedGrant(result.request), result.grant))}` : base;
      break;
    }
    case 'denied':
      text = 'Denied';
      break;
    case 'vote_recorded':
      text = `Approval recorded: ${result.approvals} of ${result.needed} (tier 3)${result.narrowed ? '; the grant is narrowed (see the message)' : ''}`;
      break;
    case 'refused':
      if (result.consoleUrl) {
        // The link must survive the 200-character cut whole: a shorter sentence, or the link alone.
        const sentence = `Not counted: a tier-${result.request.required_tier} approval needs your passkey. Approve it in the console: ${result.consoleUrl}`;
        text = sentence.length <= 200 ? sentence : result.consoleUrl;
        break;
      }
      text = `Not approved: ${result.message}`;
      break;
    case 'already_voted':
      text = `You already voted (${result.approvals} of ${result.needed} approvals so far)`;
      break;
    case 'already_decided':
      switch (result.status) {
        case 'approved':
        case 'issued':
          text = `Already approved by ${by(result.decidedBy)}`;
          break;
        case 'denied':
          text = `Already denied by ${by(result.decidedBy)}`;
          break;
        case 'timed_out':
          text = 'Too late: the request timed out';
          break;
        default:
          text = `Already decided: the request is ${result.status.replace('_', ' ')}`;
      }
  }
  return cut(text, 200);
}
