/**
 * reject_unverified_recipient, reject_unverified_sender (Postfix's reject_unverified_address in
 * smtpd_check.c): ask the verify service (actors/verify) about the address, polling while a
 * probe is in progress — at most address_verify_poll_count queries, address_verify_poll_delay
 * apart — so that a probe that finishes quickly gives its answer to this very RCPT.
 *
 *   deliverable                 → DUNNO
 *   probe in progress, deferred → unverified_*_defer_code:  "unverified address: <text>"
 *   bounced                     → unverified_*_reject_code: 4xx "unverified address: <text>",
 *                                 5xx "undeliverable address: <text>"
 *   service failure             → 450 "address verification problem"
 *
 * A 4xx reply is DEFER_IF_PERMIT under unverified_*_tempfail_action = defer_if_permit (the
 * default): it applies only if nothing later rejects. unverified_*_reject_reason replaces the
 * text. The enhanced code is 4.1.1 for recipients and 4.1.7 for senders, its class following the
 * reply code. The null sender is not verified.
 */
import type { VerifyClient } from '../../verify/client.js';
import { DUNNO, rejected, type Action, type Restriction } from './types.js';

export interface VerifySettings {
  /** The client of the verify service; null when this thread has none (`postactor check`). */
  client: () => VerifyClient | null;
  pollCount: number;
  /** Milliseconds. */
  pollDelay: number;
  warn(text: string): void;
}

export interface UnverifiedCodes {
  deferCode: number;
  rejectCode: number;
  tempfail: 'defer' | 'defer_if_permit';
  reason: string;
}

export function unverified(which: 'sender' | 'recipient', codes: UnverifiedCodes, s: VerifySettings): Restriction {
  const dsn = which === 'sender' ? '4.1.7' : '4.1.1';
  return async (r): Promise<Action> => {
    const address = which === 'sender' ? r.sender : r.recipient;
    if (!address) return DUNNO;
    const client = s.client();
    let answer: { status: string; text: string } | null = null;
    for (let count = 0; client; ) {
      try {
        answer = await client.query(address);
      } catch {
        answer = null;
        break;
      }
      if (answer.status !== 'todo' || ++count >= s.pollCount) break;
      await new Promise((resolve) => setTimeout(resolve, s.pollDelay));
    }
    const deferOrReject = (code: number, text: string): Action => {
      const reply = rejected(code, dsn, r, which, text);
      return code < 500 && codes.tempfail === 'defer_if_permit' ? { kind: 'defer_if_permit', reply } : { kind: 'reject', reply };
    };
    if (answer === null) {
      s.warn(`${client?.service ?? 'verify'} service failure`);
      return deferOrReject(450, 'address verification problem');
    }
    const code = answer.status === 'ok' ? 0 : answer.status === 'bounce' ? codes.rejectCode : codes.deferCode;
    if (code === 0) return DUNNO;
    const why = codes.reason !== '' ? codes.reason : answer.text;
    if (code < 300) return DUNNO;
    if (code < 500) return deferOrReject(code, `unverified address: ${why.slice(0, 250)}`);
    return deferOrReject(code, `undeliverable address: ${why}`);
  };
}
