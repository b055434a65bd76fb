/**
 * Every message between Postactor's actors, declared once. The runtime (src/runtime) moves these
 * as opaque structured-clone payloads; each actor's handler switches over its own union.
 */
import type { ClientInfo, Smtputf8Flags, StatusRecord, TraceMode } from '../src/queue/types.js';
import type { XforwardAttrs } from '../src/smtp/xforward.js';

/** An envelope recipient as smtpd or a producer hands it to cleanup. */
export interface EnvelopeRecipient {
  address: string;
  orcpt?: string;
  notify?: string[];
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
  /** A milter quarantined the message: cleanup puts it on hold (Postfix: milter-hold). */
  hold?: boolean;
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

/** One recipient of a delivery request; `index` points into the message's recipient list. */
export interface DeliveryRecipient {
  index: number;
  address: string;
  /** DSN original recipient ("rfc822;addr") and NOTIFY keywords, relayed to a DSN-capable next hop. */
  orcpt?: string;
  notify?: string[];
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
  /** DSN ENVID and RET of the message, relayed to a DSN-capable next hop. */
  envId?: string;
  ret?: 'FULL' | 'HDRS';
  /** sendmail -bv or a verify service probe: find out whether each recipient is deliverable, deliver nothing. */
  verify?: boolean;
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
}

export interface DeliveryReply {
  queueId: string;
  outcomes: RecipientOutcome[];
  /** Set when the destination itself failed (connect, greeting): concurrency feedback for qmgr. */
  siteFailure?: string;
}

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
}

export interface NoticeReply {
  content: Uint8Array;
}

/**
 * → rewrite (trivial-rewrite, request/reply): canonicalize or resolve one address. A resolve
 * carries the envelope sender ('' for the null sender), as Postfix's resolve_clnt_query_from():
 * sender_dependent_relayhost_maps and sender_dependent_default_transport_maps are looked up by it.
 * `verify`: an address verification probe, resolved with the address_verify_* overrides
 * (Postfix's resolve_clnt_verify_from()).
 */
export type RewriteRequest =
  | { op: 'rewrite'; context: 'local' | 'remote'; address: string }
  | { op: 'resolve'; sender: string; address: string; verify?: boolean };

export interface RewriteReply {
  address: string;
}

/** Postfix's address classes (resolve.c): which default transport an address gets. */
export type AddressClass = 'local' | 'virtual-alias' | 'virtual-mailbox' | 'relay' | 'default';

export interface ResolveReply {
  class: AddressClass;
  transport: string;
  nexthop: string;
  /** The recipient to deliver to (source routes and sender-specified routing undone). */
  recipient: string;
  flags: {
    /** The recipient cannot be delivered: 5xx bounce, 4xx deferral (4.3.0: a broken table). */
    error?: { code: number; dsn: string; text: string };
    /** Sender-specified routing (user%dom@us, "u@dom"@us, dom!u@us) in a non-final class. */
    routed?: boolean;
    /** For the caller's log: what broke (a TableError "file:line: …"). */
    warning?: string;
  };
}

/** → verify (request/reply): declared beside the client in src/verify/protocol.ts. */
export type { VerifyReply, VerifyRequest, VerifyStatus } from '../src/verify/protocol.js';

/** → flush (request/reply): declared beside the client in src/flush/protocol.ts. */
export type { FlushReply, FlushRequest, FlushStatus } from '../src/flush/protocol.js';

/** postscreen (in an smtpd thread) → dnsblog: is this client address listed by this DNS list? */
export interface DnsblRequest {
  addr: string;
  domain: string;
}

/** dnsblog's answer: the A records found (none: not listed) and their lowest TTL (-1: unknown). */
export interface DnsblReply {
  addr: string;
  domain: string;
  addrs: string[];
  ttl: number;
}
