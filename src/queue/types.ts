/**
 * The records of the queue store, declared once. A message is one `MessageMeta` (the envelope
 * and its state) plus its content bytes; both live in the same LMDB environment.
 */

/** Postfix's queues. maildrop lives outside the store (a spool directory, see design.md). */
export type QueueName = 'incoming' | 'active' | 'deferred' | 'hold' | 'corrupt';
export const QUEUE_NAMES: readonly QueueName[] = ['incoming', 'active', 'deferred', 'hold', 'corrupt'];

/**
 * A message's trace flags (Postfix's DEL_REQ_FLAG_*): `verify` sendmail -bv (USR_VRFY: the
 * sender gets a report, nothing is delivered), `record` sendmail -v (RECORD: delivered and
 * reported), `probe` an address verification probe of the verify service (MTA_VRFY: nothing is
 * delivered, each outcome goes to the verify service, no notice is sent).
 */
export type TraceMode = 'verify' | 'record' | 'probe';

/**
 * One entry of the address verification cache (Postfix's "status:probed:updated:text"): the
 * last probe's outcome, when it arrived (`updated`, ms; 0: none yet) and when a probe was last
 * sent (`probed`, ms; 0: none outstanding).
 */
export interface VerifyEntry {
  status: 'ok' | 'defer' | 'bounce' | 'todo';
  probed: number;
  updated: number;
  text: string;
}

/**
 * The times of one fast flush log (flush(8)'s per-destination logfile): `updated` (ms) is its
 * last append or truncation (the file's mtime), `read` (ms) its last delivery request (atime).
 */
export interface FlushLogTimes {
  updated: number;
  read: number;
}

/** One envelope recipient. `done` is Postfix's R → D record flip: delivered or bounced. */
export interface RecipientRecord {
  address: string;
  /** DSN ORCPT (original recipient), when the client gave one. */
  orcpt?: string;
  /** DSN NOTIFY keywords (SUCCESS, FAILURE, DELAY, NEVER); absent = Postfix's default (failure, delay). */
  notify?: string[];
  /** Postfix's original recipient (REC_TYPE_ORCP), before cleanup rewrote it; absent when it is `address`. */
  original?: string;
  done: boolean;
  /** Reason of the last deferral, shown by mailq. */
  reason?: string;
}

/** Where a message came from, for the Received header and the logs. */
export interface ClientInfo {
  name: string;        // reverse name, or "unknown"
  addr: string;        // IP address
  port: number;
  helo: string;
  protocol: 'SMTP' | 'ESMTP' | 'LOCAL' | 'QMQP';
  /** The TLS session the message came over (smtpd), for its Received header. */
  tls?: TlsInfo;
  /** The client's SASL login (smtpd AUTH): Received says "with ESMTPA". */
  saslMethod?: string;
  saslUsername?: string;
  /** smtpd_sasl_authenticated_header: Received names the login ("Authenticated sender: …"). */
  authenticatedHeader?: boolean;
  /** What an XFORWARD client said about the mail's origin (actors/smtpd/xforward.ts). */
  forwarded?: ForwardedClient;
  /** local_header_rewrite_clients matched (cleanup): the next XFORWARD says SOURCE=LOCAL. */
  rewriteLocal?: boolean;
}

/**
 * The mail's origin as an XFORWARD client forwarded it (smtpd_authorized_xforward_hosts): kept
 * with the message so that our own XFORWARD (smtp_send_xforward_command) passes it on. What was
 * not forwarded reads "unknown", as in Postfix.
 */
export interface ForwardedClient {
  name: string;
  addr: string;
  port: string;
  protocol: string;
  helo?: string;
  /** The queue ID at the first MTA (IDENT). */
  ident?: string;
  /** SOURCE: LOCAL or REMOTE (the address rewriting context). */
  source?: 'LOCAL' | 'REMOTE';
  /** A client attribute (NAME ADDR PORT PROTO HELO) was forwarded, not only IDENT or SOURCE. */
  forwardedClient?: boolean;
}

/** What an smtpd TLS session negotiated. */
export interface TlsInfo {
  protocol: string;        // TLSv1.3
  cipher: string;          // TLS_AES_256_GCM_SHA384
  usebits: number;
  algbits: number;
  /** " server-signature RSA-PSS (2048 bits)", or ''. */
  signature: string;
  /** smtpd_tls_received_header of the service that received the message. */
  received: boolean;
  /** The client's certificate, when it presented one (smtpd_tls_ask_ccert / _req_ccert). */
  ccert?: ClientCertInfo;
  /** smtpd_tls_ask_ccert: Received says "(Client did not present a certificate)" without one. */
  ccertAsked?: boolean;
  /** The SNI name the client asked for, when tls_server_sni_maps matched it. */
  sni?: string;
}

/** A client certificate as Postfix's TLS library describes it (tls_server.c). */
export interface ClientCertInfo {
  /** Subject CommonName, or ''. */
  cn: string;
  /** Issuer CommonName (else its Organization), or ''. */
  issuer: string;
  /** Verified against smtpd_tls_CAfile / _CApath within smtpd_tls_ccert_verifydepth. */
  trusted: boolean;
  /** smtpd_tls_fingerprint_digest of the certificate, and of its public key: "AB:CD:…". */
  fingerprint: string;
  pkeyFingerprint: string;
}

export interface MessageMeta {
  queueId: string;
  queue: QueueName;
  /** Arrival time, ms since the epoch. */
  arrival: number;
  /** Envelope sender; '' is the null sender <>. */
  sender: string;
  recipients: RecipientRecord[];
  /** Content size in bytes, as stored (headers added by cleanup included). */
  size: number;
  messageId?: string;
  /** When a deferred message is due again, ms since the epoch; 0 when not deferred. */
  nextAttempt: number;
  attempts: number;
  client?: ClientInfo;
  /** DSN ENVID and RET. */
  envId?: string;
  ret?: 'FULL' | 'HDRS';
  /** postsuper -e / -f: returned to the sender as expired at qmgr's next attempt. */
  forcedExpire?: boolean;
  /** header/body_checks FILTER "transport:nexthop": every delivery goes there instead of the normal route. */
  filter?: string;
  /** delay_warning_time: the one delay notice has been sent (Postfix's W record set to -1). */
  delayWarned?: boolean;
  /** sendmail -bv (verify: report deliverability, deliver nothing) or -v (deliver and report), or
   *  a verify service probe (deliver nothing, report to the service). */
  trace?: TraceMode;
  /** SMTPUTF8 flags of the message (absent: none). */
  smtputf8?: Smtputf8Flags;
  /**
   * CRC-32 of the content as stored (set by the store when the message is written, in the same
   * transaction): checked before delivery, since LMDB keeps no checksums of its own. Absent in
   * messages written before checksums existed.
   */
  checksum?: number;
}

/**
 * Postfix's queue-file SMTPUTF8 flags (global/smtputf8.h). `requested`: the client asked for
 * SMTPUTF8, or cleanup found UTF-8 in a message from a class in smtputf8_autodetect_classes;
 * `header` and `sender`: a header or the envelope sender is UTF-8. Delivery to a next hop without
 * SMTPUTF8 fails only when it was requested and the message needs it: a UTF-8 header, sender or
 * recipient of that delivery.
 */
export interface Smtputf8Flags {
  requested: boolean;
  header: boolean;
  sender: boolean;
}

/**
 * Postfix's per-message status logs (bounce/ID, defer/ID, trace/ID): one record per recipient
 * outcome that a notice may have to report. They live in the queue store and change in the same
 * transaction as the message they belong to.
 */
export type LogKind = 'bounce' | 'defer' | 'trace';

export interface StatusRecord {
  /** Index into MessageMeta.recipients. */
  index: number;
  /** Final recipient (as delivered to) and the DSN original recipient ("rfc822;a@b"). */
  address: string;
  orcpt?: string;
  /** Postfix's original recipient, when it is not `address`: "<address> (expanded from <original>)". */
  original?: string;
  /** Enhanced status code x.y.z. */
  dsn: string;
  /** RFC 3464 Action: failed, delayed, delivered, relayed, expanded (or deliverable/undeliverable for -bv). */
  action: string;
  /** The explanation Postfix logs in status=…(reason). */
  reason: string;
  /** relay=host[addr]:port or none. */
  relay: string;
  /** When the outcome was recorded, ms since the epoch. */
  time: number;
}

/** An MTA-STS policy (RFC 8461) as cached in the queue store's mta-sts database. */
export interface StsPolicyRecord {
  /** The id of the _mta-sts TXT record the policy was fetched under. */
  id: string;
  mode: 'enforce' | 'testing' | 'none';
  /** The policy's mx: patterns, lower case ("mail.example.com", "*.example.net"). */
  mx: string[];
  /** max_age, in seconds. */
  maxAge: number;
  /** When it was fetched (ms since the epoch): it is valid until fetched + maxAge. */
  fetched: number;
}
