/**
 * SMTPUTF8 autodetection in cleanup (Postfix's cleanup_addr.c, cleanup_out.c, global/smtputf8.c).
 * With smtputf8_enable, cleanup notes a UTF-8 envelope sender and UTF-8 in any header of the
 * message as it is queued (its own Received: "for <ü@example.com>" included). A message counts as
 * having requested SMTPUTF8 when the client said so (MAIL FROM … SMTPUTF8), or when it comes from
 * a class in smtputf8_autodetect_classes and has UTF-8 in its sender, a recipient or a header.
 * The flags go into the queue; the smtp client decides per delivery (actors/smtp).
 */
import type { Smtputf8Flags } from '../../src/queue/types.js';
import type { CleanupRequest } from '../protocol.js';

/** Postfix's mail source classes (mail_params.h MAIL_SRC_NAME_*). */
const CLASSES = new Set(['sendmail', 'smtpd', 'qmqpd', 'forward', 'bounce', 'notify', 'verify', 'all']);

export interface Smtputf8Settings {
  enable: boolean;
  /** The classes of smtputf8_autodetect_classes ("all" stands for every class). */
  autodetect: ReadonlySet<string>;
}

/** smtputf8_enable and smtputf8_autodetect_classes; unknown class names are reported by `warn`. */
export function smtputf8Settings(enable: boolean, classes: string[], warn: (text: string) => void): Smtputf8Settings {
  const autodetect = new Set<string>();
  for (const c of classes.map((x) => x.toLowerCase())) {
    if (CLASSES.has(c)) autodetect.add(c);
    else warn(`unknown smtputf8_autodetect_classes value "${c}" in "${classes.join(', ')}"`);
  }
  return { enable, autodetect };
}

/** The mail source class of a submission to cleanup. */
function classOf(origin: CleanupRequest['origin']): string {
  switch (origin) {
    case 'smtpd': return 'smtpd';
    case 'qmqpd': return 'qmqpd';
    case 'pickup': return 'sendmail';
    case 'bounce': return 'bounce';
  }
}

const NON_ASCII = /[^\x00-\x7f]/;

/** Whether a UTF-8 envelope address of this message would request SMTPUTF8 (the client's request, or autodetection for its class). */
export function utf8Addresses(s: Smtputf8Settings, request: CleanupRequest): boolean {
  return s.enable && (request.smtputf8 === true || s.autodetect.has('all') || s.autodetect.has(classOf(request.origin)));
}

/** Any byte outside US-ASCII in buf[0:end] (the header section as queued). */
function hasNonAscii(buf: Uint8Array, end: number): boolean {
  for (let i = 0; i < end; i++) if (buf[i]! >= 0x80) return true;
  return false;
}

/**
 * The SMTPUTF8 flags of a message as queued: `headerEnd` is where its header section ends in
 * `content`. Undefined when none is set.
 */
export function smtputf8Flags(s: Smtputf8Settings, request: CleanupRequest, recipients: readonly { address: string }[], content: Uint8Array, headerEnd: number): Smtputf8Flags | undefined {
  if (!s.enable) return undefined;
  const sender = NON_ASCII.test(request.sender);
  const header = hasNonAscii(content, headerEnd);
  const autodetect = s.autodetect.has('all') || s.autodetect.has(classOf(request.origin));
  const detected = autodetect && (sender || header || recipients.some((r) => NON_ASCII.test(r.address)));
  const requested = request.smtputf8 === true || detected;
  return requested || sender || header ? { requested, header, sender } : undefined;
}
