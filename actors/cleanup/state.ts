/**
 * The state of one message as cleanup builds it (Postfix's CLEANUP_STATE, cleanup_state.c): what
 * the checks have decided so far, and the refusal a stage ends the message with. The stages
 * (envelope.ts, message.ts, body.ts, milter.ts, out.ts) read and update it in Postfix's order.
 */
import type { CleanupRequest } from '../protocol.js';

/** What the checks decided for the whole message. */
export interface Verdict {
  hold: boolean;
  discard: boolean;
  redirect: string | null;
  filter: string | null;
  bcc: string[];
}

/** A message's verdict before any check: held already when a milter of smtpd quarantined it. */
export function newVerdict(request: CleanupRequest): Verdict {
  return { hold: request.hold === true, discard: false, redirect: null, filter: null, bcc: [] };
}

/** A stage's refusal: the reply cleanup gives (a CleanupReply that is not ok). */
export type Failure = { ok: false; code: number; dsn: string; text: string };

/** Checks still run: DISCARD and REDIRECT end them for the message (Postfix clears CLEANUP_FLAG_FILTER). */
export const filtering = (v: Verdict) => !v.discard && v.redirect === null;

/** Postfix's CLEANUP_STAT_WRITE reply, also its answer to a table that cannot be read. */
export const WRITE_ERROR: Failure = { ok: false, code: 451, dsn: '4.3.0', text: 'Error: queue file write error' };
