/**
 * qmgr's delivery request and a delivery agent's reply (Postfix's deliver_request.h), declared
 * here so the agents' shared helpers (src/delivery/agent.ts, log.ts) can use them;
 * actors/protocol.ts re-exports them.
 */
import type { LoggedRecipient } from './log.js';
import type { Smtputf8Flags } from '../queue/types.js';
import type { XforwardAttrs } from '../smtp/xforward.js';

/** One recipient of a delivery request; `index` points into the message's recipient list. */
export interface DeliveryRecipient {
  index: number;
  address: string;
  /** DSN original recipient ("rfc822;addr") and NOTIFY keywords, relayed to a DSN-capable next hop. */
  orcpt?: string;
  notify?: string[];
  /** Postfix's original recipient (before rewriting), when it is not `address`: logged as orig_to=<…>, X-Original-To. */
  original?: string;
}

/** qmgr → delivery agent (request/reply): deliver one message to some recipients at one destination. */
export interface DeliveryRequest {
  queueId: string;
  transport: string;
  nexthop: string;
  sender: string;
  recipients: DeliveryRecipient[];
  /** Arrival in the queue and the moment qmgr took the message, ms: for delays=a/b/c/d. */
  arrival: number;
  activated: number;
  size: number;
  /**
   * The content's checksum from the envelope (src/queue/integrity.ts): the agent checks the
   * content against it as it reads it (src/delivery/content.ts); absent for messages stored
   * before checksums existed.
   */
  checksum?: number;
  /** DSN ENVID and RET of the message, relayed to a DSN-capable next hop. */
  envId?: string;
  ret?: 'FULL' | 'HDRS';
  /** sendmail -bv or a verify service probe: find out whether each recipient is deliverable, deliver nothing. */
  verify?: boolean;
  /**
   * A verify service probe (Postfix's DEL_REQ_FLAG_MTA_VRFY; `verify` is set too): the agent
   * holds its status lines back and returns them (DeliveryReply.probeLines); qmgr logs them once
   * the verify service has the outcome, as Postfix's verify_append() updates, then logs.
   */
  probe?: true;
  /** The message's SMTPUTF8 flags (absent: none); the agent adds the recipients' own. */
  smtputf8?: Smtputf8Flags;
  /** The message's origin for XFORWARD (smtp_send_xforward_command: src/smtp/xforward.ts). */
  xforward?: XforwardAttrs;
}

export type DeliveryStatus = 'sent' | 'deferred' | 'bounced';

export interface RecipientOutcome {
  index: number;
  status: DeliveryStatus;
  /** Enhanced status code, e.g. 2.0.0, 4.4.1, 5.1.1. */
  dsn: string;
  /** The text Postfix shows in parentheses after status=, e.g. "250 2.0.0 Ok: queued as X". */
  reason: string;
  /** relay=host[addr]:port, or "none". */
  relay: string;
  /**
   * A success's RFC 3464 Action for a NOTIFY=SUCCESS notice: "delivered" (final delivery, the
   * default), "relayed" (handed to a next hop without DSN), "expanded" (an alias or .forward);
   * "passed" when the next hop announced DSN and got NOTIFY: it notifies, we do not.
   */
  action?: 'delivered' | 'relayed' | 'expanded' | 'passed';
  /** A bounce that soft_bounce kept as a deferral (./soft-bounce.ts): logged as status=SOFTBOUNCE. */
  softBounce?: true;
}

export interface DeliveryReply {
  queueId: string;
  outcomes: RecipientOutcome[];
  /** Set when the destination itself failed (connect, greeting): concurrency feedback for qmgr. */
  siteFailure?: string;
  /**
   * The content is damaged (it does not match its checksum, or it is missing): nothing was
   * delivered and `outcomes` is empty; qmgr saves the message to the corrupt queue at the end of
   * its attempt (Postfix's agent marks the queue file corrupt and reports a deferral).
   */
  corrupt?: 'missing' | 'mismatch';
  /** A probe's status lines, not logged yet (DeliveryRequest.probe). */
  probeLines?: HeldStatusLine[];
}

/**
 * A probe's status line held back until the verify service has its outcome (src/delivery/log.ts
 * statusLog): who logs it (the agent's log tag), for which recipient, what happened. Its status
 * word (deliverable, undeliverable, undeliverable-but-not-cached) is chosen when it is logged.
 */
export interface HeldStatusLine {
  tag: string;
  recipient: LoggedRecipient;
  outcome: RecipientOutcome;
  delay: string;
  delays: string;
}
