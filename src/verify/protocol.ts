/** The verify service's messages, declared once for smtpd, qmgr and the service (actors/protocol.ts re-exports them). */

/**
 * → verify (request/reply, Postfix's verify_clnt protocol): `query` an address's status (a
 * probe is sent when the service knows nothing or its knowledge needs refreshing), `update` it
 * with a probe's outcome (qmgr, at the end of a probe's delivery attempt).
 */
export type VerifyRequest =
  | { op: 'query'; address: string }
  | { op: 'update'; address: string; status: Exclude<VerifyStatus, 'todo'>; text: string };

/** Postfix's DEL_RCPT_STAT_*: deliverable, deferred, bounced, or not known yet (probe in progress). */
export type VerifyStatus = 'ok' | 'defer' | 'bounce' | 'todo';

export type VerifyReply =
  | { op: 'query'; status: VerifyStatus; text: string }
  | { op: 'update' };
