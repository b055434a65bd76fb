/**
 * The vocabulary of the smtpd access policy: what a restriction sees (PolicyRequest), what it
 * says (Action), and the replies it builds, in Postfix's words (smtpd_check.c).
 *
 * A restriction is a small function from a request to an Action. The evaluator (../policy.ts)
 * composes them from the smtpd_*_restrictions lists; restrictions never log or reply themselves.
 */
import type { ClientCertInfo } from '../../queue/types.js';
import type { PeerStatus } from '../../net/peername.js';

/** Which list a restriction runs in; it names the thing a reply is about ("Client host", …). */
export type Stage = 'client' | 'helo' | 'sender' | 'relay' | 'recipient' | 'data' | 'end_of_data' | 'etrn'
  /** Not lists: what check_ccert_access replies are about (the certificate's CommonName), … */
  | 'ccert'
  /** … check_reverse_client_hostname_*access (the client's unverified name), check_sasl_access (the login). */
  | 'reverse_client' | 'sasl';

/** Where in the SMTP dialogue a check runs: the word Postfix logs ("reject: RCPT from …"). */
export type Where = 'CONNECT' | 'HELO' | 'EHLO' | 'MAIL' | 'RCPT' | 'DATA' | 'END-OF-MESSAGE' | 'ETRN';

export interface PolicyRequest {
  clientAddr: string;
  /** The verified (forward-confirmed) client hostname, or "unknown". */
  clientName: string;
  /** The client's reverse (PTR) name, or "unknown"; clientName when not given. */
  reverseClientName?: string;
  /** How each name was found (Postfix's name_status, reverse_name_status); 'ok' when not given. */
  clientNameStatus?: PeerStatus;
  reverseClientNameStatus?: PeerStatus;
  /** The HELO/EHLO argument; '' before HELO. */
  helo: string;
  /** The MAIL FROM address ('' is the null sender); null before MAIL FROM. */
  sender: string | null;
  /** The RCPT TO address being checked; null outside RCPT (DATA, end of data: see recipientCount). */
  recipient: string | null;
  /** Recipients accepted so far in this transaction. */
  recipientCount: number;
  protocol: 'SMTP' | 'ESMTP';
  queueId: string | null;
  /** Message size in bytes (end of data only). */
  size?: number;
  /** Where the check runs. */
  where: Where;
  /** Postfix's policy "instance": one value per message transaction. */
  instance?: string;
  /** A HOLD action already matched in this transaction (Postfix logs it once). */
  held?: boolean;
  /** The TLS session, when there is one (policy attributes encryption_*, ccert_*). */
  tls?: { protocol: string; cipher: string; usebits: number; ccert?: ClientCertInfo };
  /** The SASL login of the session (AUTH), when there is one. */
  saslMethod?: string | null;
  saslUsername?: string | null;
  /** The AUTH= parameter of MAIL FROM. */
  saslSender?: string | null;
  /** The ETRN argument (smtpd_etrn_restrictions, check_etrn_access), without its "@" or "#". */
  etrnDomain?: string;
  /** The client pipelined improperly (actors/smtpd/pipelining.ts): reject_unauth_pipelining. */
  illPipelining?: boolean;
}

/** An SMTP reply: "code dsn text". */
export interface Reply { code: number; dsn: string; text: string }

export type Action =
  | { kind: 'dunno' }
  /**
   * `warning`: a remark logged with it (an access table entry with an empty value). `forbid`: an
   * OK from this restriction is a configuration error (Postfix's forbid_allowlist: the
   * check_*_{a,mx,ns}_access and check_reverse_client_hostname_access restrictions).
   */
  | { kind: 'permit'; warning?: string; forbid?: Forbid }
  | { kind: 'reject'; reply: Reply }
  /** DEFER_IF_PERMIT: defer if the request would later be permitted. */
  | { kind: 'defer_if_permit'; reply: Reply }
  /** DEFER_IF_REJECT: a later 5xx reject becomes this 4xx. */
  | { kind: 'defer_if_reject'; reply: Reply }
  | { kind: 'warn'; text: string }
  | { kind: 'discard'; text: string; source: string }
  /**
   * An action smtpd hands to cleanup with the message (Postfix's "delegated" actions): HOLD puts
   * it on hold, FILTER routes it through a content filter, REDIRECT replaces its recipients, BCC
   * adds one. `text` is the log text, `value` the transport:nexthop or the address.
   */
  | { kind: 'delegate'; what: 'hold' | 'filter' | 'redirect' | 'bcc'; text: string; value: string; source: string }
  | { kind: 'prepend'; header: string; source: string }
  /** A table result naming further restrictions, evaluated in place (access(5)). */
  | { kind: 'restrictions'; names: string[]; source: string; stage: Stage; forbid?: Forbid }
  /** A configuration remark to log; evaluation goes on (Postfix's msg_warn + DUNNO). */
  | { kind: 'warning'; warning: string }
  /** Lookup or configuration failure that must not pass silently: warning(s) logged, reply is 4xx. */
  | { kind: 'error'; reply: Reply; warning: string | string[] };

/** A restriction whose OK is refused: its name and what it was about. */
export interface Forbid { restriction: string; target: string }

export const DUNNO: Action = Object.freeze({ kind: 'dunno' });
export const PERMIT: Action = Object.freeze({ kind: 'permit' });

export type Restriction = (request: PolicyRequest, stage: Stage) => Action | Promise<Action>;

/** The words Postfix puts in a reply for each stage: "<name>: Class rejected: text". */
export const REPLY_CLASS: Record<Stage, string> = {
  client: 'Client host',
  helo: 'Helo command',
  sender: 'Sender address',
  relay: 'Recipient address',
  recipient: 'Recipient address',
  data: 'Data command',
  end_of_data: 'End-of-data',
  etrn: 'Etrn command',
  ccert: 'Client certificate',
  reverse_client: 'Unverified Client host',
  sasl: 'SASL login name',
};

/** What "<…>" names in a reply: client name[addr], the HELO name, an address, DATA… */
export function replyName(r: PolicyRequest, stage: Stage): string {
  switch (stage) {
    case 'client': return `${r.clientName}[${r.clientAddr}]`;
    case 'helo': return r.helo;
    case 'sender': return r.sender ?? '';
    case 'relay':
    case 'recipient': return r.recipient ?? '';
    case 'data': return 'DATA';
    case 'end_of_data': return 'END-OF-MESSAGE';
    case 'etrn': return r.etrnDomain ?? '';
    case 'ccert': return r.tls?.ccert?.cn ?? '';
    case 'reverse_client': return r.reverseClientName ?? r.clientName;
    // As Postfix's printable(): what is not printable ASCII shows as "_".
    case 'sasl': return (r.saslUsername ?? '').replace(/[^\x20-\x7e]/g, '_');
  }
}

/** The enhanced code class follows the reply code's class (a 4xx reject_code gives 4.x.x). */
export function dsnFor(code: number, dsn: string): string {
  return `${Math.floor(code / 100)}${dsn.slice(1)}`;
}

/** "<name>: Class rejected: text" with code and class-adjusted dsn. */
export function rejected(code: number, dsn: string, r: PolicyRequest, stage: Stage, text: string): Reply {
  return { code, dsn: dsnFor(code, dsn), text: `<${replyName(r, stage)}>: ${REPLY_CLASS[stage]} rejected: ${text}` };
}

export function reject(reply: Reply): Action {
  return { kind: 'reject', reply };
}

export function formatReply(reply: Reply): string {
  return `${reply.code} ${reply.dsn} ${reply.text}`;
}

/** Splits an optional leading enhanced status code off a text: "5.7.1 go away" → ["5.7.1", "go away"]. */
export function splitDsn(text: string, fallback: string): [string, string] {
  const m = /^([245])\.(\d{1,3})\.(\d{1,3})(?:\s+|$)/.exec(text);
  if (!m) return [fallback, text];
  return [`${m[1]}.${m[2]}.${m[3]}`, text.slice(m[0].length)];
}
