/**
 * The delivery log line every Postfix delivery agent writes, shared by all our agents:
 *   ID: to=<rcpt>, relay=host[addr]:port, delay=0.12, delays=0.01/0/0.05/0.06, dsn=2.0.0, status=sent (…)
 * with ", orig_to=<original>" after to=<…> when the original recipient differs (log_adhoc.c).
 */
import type { Logger } from '../log/maillog.js';
import type { SmtpEnvelope } from '../smtp/client.js';
import type { DeliveryRequest, HeldStatusLine, RecipientOutcome } from './request.js';

/** Seconds as Postfix prints them: two decimals below 10 s, trailing zeros dropped; "0" for zero. */
export function formatSeconds(seconds: number): string {
  if (seconds <= 0) return '0';
  if (seconds >= 10) return String(Math.round(seconds));
  const s = seconds.toFixed(2).replace(/\.?0+$/, '');
  return s === '' || s === '0' ? '0' : s;
}

export interface Delays {
  delay: string;
  delays: string;
}

/** delay=total; delays=a/b/c/d: before qmgr, in qmgr, connection setup, transmission. */
export function formatDelays(arrival: number, activated: number, started: number, timings: { connect: number; transmit: number }, now: number): Delays {
  const a = (activated - arrival) / 1000;
  const b = (started - activated) / 1000;
  return {
    delay: formatSeconds((now - arrival) / 1000),
    delays: [a, b, timings.connect / 1000, timings.transmit / 1000].map(formatSeconds).join('/'),
  };
}

/** A logged recipient: its address and, when cleanup or an alias rewrote it, the original recipient. */
export interface LoggedRecipient {
  address: string;
  original?: string;
}

/** `to=<address>`, and `, orig_to=<original>` when the original is not empty and differs (case-insensitively), as log_adhoc.c writes them. */
export function recipientLog(r: LoggedRecipient): string {
  const orig = r.original && r.original.toLowerCase() !== r.address.toLowerCase() ? `, orig_to=<${r.original}>` : '';
  return `to=<${r.address}>${orig}`;
}

export function logDelivery(log: Logger, queueId: string, recipient: string | LoggedRecipient, o: RecipientOutcome, d: Delays, verify = false): void {
  // An address probe (sendmail -bv, a verify service probe) delivers nothing: Postfix logs
  // status=deliverable, or undeliverable for a bounce and a deferral alike (bounce.c, defer.c).
  // A bounce kept by soft_bounce is logged as Postfix's bounce.c logs it: status=SOFTBOUNCE.
  const status = verify ? (o.status === 'sent' ? 'deliverable' : 'undeliverable') : o.softBounce ? 'SOFTBOUNCE' : o.status;
  log.info(statusLine(queueId, typeof recipient === 'string' ? { address: recipient } : recipient, o, d, status));
}

/** "ID: to=<…>, relay=…, delay=…, delays=…, dsn=…, status=STATUS (…)" (log_adhoc.c). */
export function statusLine(queueId: string, recipient: LoggedRecipient, o: RecipientOutcome, d: Delays, status: string): string {
  return `${queueId}: ${recipientLog(recipient)}, relay=${o.relay}, delay=${d.delay}, delays=${d.delays}, dsn=${o.dsn}, status=${status} (${o.reason})`;
}

/** A status line held back, to be logged under `log`'s tag (qmgr: actors/qmgr/probes.ts). */
export function heldLine(log: Logger, recipient: LoggedRecipient, o: RecipientOutcome, d: Delays): HeldStatusLine {
  const { address, original } = recipient;
  return { tag: log.tag(), recipient: original !== undefined ? { address, original } : { address }, outcome: o, delay: d.delay, delays: d.delays };
}

/**
 * Where a delivery's status lines go: to the log at once, or, for a verify service probe
 * (DeliveryRequest.probe), into `held`: Postfix's verify_append() tells the verify service
 * first and logs only once it has the outcome, so that whoever sees the line and asks again
 * gets the answer. qmgr logs the held lines after its update (actors/qmgr/probes.ts).
 */
export class StatusLog {
  readonly held: HeldStatusLine[] = [];

  constructor(private readonly log: Logger, private readonly queueId: string, private readonly mode: { verify?: boolean; probe?: true }) {}

  line(recipient: LoggedRecipient, o: RecipientOutcome, d: Delays): void {
    if (this.mode.probe) this.held.push(heldLine(this.log, recipient, o, d));
    else logDelivery(this.log, this.queueId, recipient, o, d, this.mode.verify ?? false);
  }

  /** The reply's `probeLines` when any were held. */
  reply(): { probeLines?: HeldStatusLine[] } {
    return this.held.length > 0 ? { probeLines: this.held } : {};
  }
}

/** The SMTP/LMTP envelope of a delivery request: DSN parameters relayed, -bv verification. */
export function smtpEnvelope(req: DeliveryRequest, size: number): SmtpEnvelope {
  return {
    sender: req.sender,
    recipients: req.recipients.map((r) => r.address),
    size,
    ...(req.verify ? { verify: true } : {}),
    ...(req.xforward ? { xforward: req.xforward } : {}),
    ...smtputf8Of(req),
    dsn: {
      ...(req.ret ? { ret: req.ret } : {}),
      ...(req.envId ? { envId: req.envId } : {}),
      recipients: req.recipients.map((r) => {
        const orcpt = r.orcpt ?? orcptOfOriginal(req, r);
        return { ...(r.notify ? { notify: r.notify } : {}), ...(orcpt ? { orcpt } : {}) };
      }),
    },
  };
}

/**
 * A recipient queued without DSN ORCPT (a BCC recipient) gets its original recipient as ORCPT,
 * as Postfix's smtp_proto.c makes it up: "utf-8;" for a UTF-8 address of an SMTPUTF8 message,
 * else "rfc822;".
 */
function orcptOfOriginal(req: DeliveryRequest, r: DeliveryRequest['recipients'][number]): string | undefined {
  const original = r.original ?? r.address;
  if (!original) return undefined;
  return `${req.smtputf8?.requested && /[^\x00-\x7f]/.test(original) ? 'utf-8' : 'rfc822'};${original}`;
}

/**
 * SMTPUTF8 of one delivery (Postfix's smtp_proto.c): MAIL FROM gets SMTPUTF8 when the message
 * requested it and the server offers it; the delivery fails with 5.6.7 at a server that does not
 * offer it only when it was requested and this delivery needs it — a UTF-8 header or sender, or a
 * UTF-8 recipient among this delivery's recipients (qmgr_deliver.c's SMTPUTF8_FLAG_RECIPIENT).
 */
function smtputf8Of(req: DeliveryRequest): Pick<SmtpEnvelope, 'smtputf8' | 'smtputf8Required'> {
  const f = req.smtputf8;
  if (!f?.requested) return {};
  const required = f.header || f.sender || req.recipients.some((r) => /[^\x00-\x7f]/.test(r.address));
  return { smtputf8: true, ...(required ? { smtputf8Required: true } : {}) };
}
