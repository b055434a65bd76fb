/**
 * Every message between Postactor's actors, declared once. The runtime (src/runtime) moves these
 * as opaque structured-clone payloads; each actor's handler switches over its own union.
 */
import type { ClientInfo, StatusRecord, TraceMode } from '../src/queue/types.js';
import type { DeliveryReply, DeliveryRequest } from '../src/delivery/request.js';
import type { ResolveReply, RewriteReply, RewriteRequest } from '../src/rewrite/protocol.js';
import { serviceClient, wholeBuffer } from '../src/runtime/call.js';

/** An envelope recipient as smtpd or a producer hands it to cleanup. */
export interface EnvelopeRecipient {
  address: string;
  orcpt?: string;
  notify?: string[];
  /**
   * Postfix's original recipient (REC_TYPE_ORCP): the address before canonical mapping, virtual
   * aliasing or local's alias expansion rewrote it; absent when it is `address` itself. A
   * submitter that forwards mail (local(8)) sets it; cleanup sets it for the others.
   */
  original?: string;
}

/** → cleanup (request/reply): write a new message into the incoming queue. */
export interface CleanupRequest {
  /** smtpd assigns the ID at the first accepted RCPT (its "client=" log line uses it), qmqpd at connect. */
  queueId: string;
  sender: string;
  recipients: EnvelopeRecipient[];
  /** The message as received (CRLF lines, dot-unstuffed); transferred, not copied. */
  content: Uint8Array;
  client?: ClientInfo;
  /** Arrival time, ms since the epoch. */
  arrival: number;
  envId?: string;
  ret?: 'FULL' | 'HDRS';
  /** Who is submitting: selects which headers cleanup adds (a bounce has its own). */
  origin: 'smtpd' | 'qmqpd' | 'bounce' | 'pickup';
  /** content_filter of the receiving service (smtpd, pickup: main.cf or its master.cf -o), as Postfix's
   *  smtpd passes it to cleanup; a header_checks FILTER action overrides it. */
  contentFilter?: string;
  /** sendmail -bv (verify) / -v (record): qmgr mails the sender a delivery status report;
   *  probe: an address verification probe of the verify service (its results go to the service). */
  trace?: TraceMode;
  /** origin 'pickup' (local submission via sendmail): what cleanup needs besides the envelope. */
  local?: LocalSubmission;
  /** SMTPUTF8 was requested: the client's MAIL FROM … SMTPUTF8, or (a notice) the original's request. */
  smtputf8?: boolean;
  /** A milter quarantined the message, or an smtpd access table said HOLD: cleanup puts it on hold. */
  hold?: boolean;
  /** An smtpd access table's REDIRECT: cleanup replaces the recipients (a header_checks REDIRECT wins). */
  redirect?: string;
  /** smtpd access tables' BCC addresses: cleanup adds them as recipients with NOTIFY=NEVER. */
  bcc?: string[];
  /** Header fields smtpd_milters added or changed ("Name: value"): cleanup applies milter_header_checks to them. */
  milterHeaders?: string[];
}

/** A local submission's extras (Postfix: the FULL record and the rewrite context of the queue file). */
export interface LocalSubmission {
  /** Sender full name (sendmail -F / $NAME): used only in a From: header cleanup adds. */
  fullName?: string;
  /** 'local': qualify unqualified addresses with @$myorigin (append_at_myorigin); 'remote' (-G): leave them. */
  rewriteContext: 'local' | 'remote';
}

export type CleanupReply =
  | { ok: true; queueId: string; size: number }
  | { ok: false; code: number; dsn: string; text: string };

/** → qmgr (mailbox, one-way). */
export type QmgrMessage =
  | { type: 'queued'; queueId: string }            // from cleanup: a new message in incoming
  | { type: 'flush' }                              // from postactor flush: retry deferred now
  | { type: 'kick'; requests: string };            // from flush: postkick's request letters (F: forget dead destinations)

/** qmgr → delivery agent (request/reply): declared beside the agents' helpers in src/delivery/request.ts. */
export type { DeliveryRecipient, DeliveryReply, DeliveryRequest, DeliveryStatus, HeldStatusLine, RecipientOutcome } from '../src/delivery/request.js';

/**
 * qmgr → bounce (request/reply): render one delivery status notification (RFC 3464) from a
 * status log. Postfix's bounce, defer and trace services in one actor: `kind` picks the
 * template — failure (bounce log), delay (defer log), success (trace log), verify (sendmail -bv
 * / -v). `postmaster` renders the postmaster's copy (its subject, headers only).
 */
export interface NoticeRequest {
  kind: 'failure' | 'delay' | 'success' | 'verify';
  postmaster?: boolean;
  /** Who gets the notice (the To: header): the original sender, or a *_notice_recipient. */
  to: string;
  queueId: string;
  /** The original message's envelope sender ('' for a bounce) and DSN ENVID. */
  sender: string;
  envId?: string;
  arrival: number;
  records: StatusRecord[];
  /** The original message, or its headers only (RET=HDRS or over bounce_size_limit). */
  original: Uint8Array;
  headersOnly: boolean;
  /** For delay notices: arrival + maximal_queue_lifetime (Will-Retry-Until), ms. */
  willRetryUntil?: number;
  /** The original requested SMTPUTF8: message/global-delivery-status, message/global(-headers). */
  smtputf8?: boolean;
}

export interface NoticeReply {
  content: Uint8Array;
}

/** → rewrite (trivial-rewrite, request/reply): declared beside the resolver in src/rewrite/protocol.ts. */
export type { AddressClass, ResolveReply, RewriteReply, RewriteRequest } from '../src/rewrite/protocol.js';

/** → verify (request/reply): declared beside the client in src/verify/protocol.ts. */
export type { VerifyReply, VerifyRequest, VerifyStatus } from '../src/verify/protocol.js';

/** → flush (request/reply): declared beside the client in src/flush/protocol.ts. */
export type { FlushReply, FlushRequest, FlushStatus } from '../src/flush/protocol.js';

/** postscreen → dnsblog (request/reply): declared beside postscreen in src/postscreen/protocol.ts. */
export type { DnsblReply, DnsblRequest } from '../src/postscreen/protocol.js';

/*
 * The typed clients of the request/reply services (src/runtime/call.ts): one `call` per
 * request, over the caller's direct channel to a thread of the service. They are declared here,
 * beside the messages they carry, because actors share nothing but this file and src/.
 */

/**
 * cleanup (Postfix's cleanup_user.c side): smtpd, qmqpd, pickup and qmgr's notices submit a new
 * message. The content is transferred to the cleanup thread, so after the call (whatever its
 * answer) it no longer belongs to the caller: a retry must send a new buffer.
 */
export const cleanupService = serviceClient<CleanupRequest, CleanupReply>('cleanup', (req) => wholeBuffer(req.content));

/** bounce, defer and trace notices (qmgr). */
export const bounceService = serviceClient<NoticeRequest, NoticeReply>('bounce');

/** trivial-rewrite's two operations (qmgr, on a cache miss). */
export const rewriteService = serviceClient<RewriteRequest & { op: 'rewrite' }, RewriteReply>('rewrite');
export const resolveService = serviceClient<RewriteRequest & { op: 'resolve' }, ResolveReply>('rewrite');

/** A delivery agent, named per call by its transport (qmgr). */
export const deliveryService = serviceClient<DeliveryRequest, DeliveryReply>('smtp');
