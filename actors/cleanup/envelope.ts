/**
 * The envelope stages of cleanup, in Postfix's order:
 *   - each recipient's original recipient kept as it came (cleanup_envelope.c's REC_TYPE_ORCP),
 *     and the DSN original recipient made up where the client gave none (smtpd.c, cleanup_addr.c);
 *   - a local submission's addresses qualified as trivial-rewrite does in the local context
 *     (cleanup_rewrite.c), and its Bcc, Resent-Bcc, Return-Path and Content-Length dropped;
 *   - canonical mapping and masquerading of sender and recipients (cleanup_addr.c,
 *     cleanup_map11.c, cleanup_masquerade.c);
 *   - the recipients written out (cleanup_addr.c's automatic BCC, cleanup_out_recipient.c):
 *     BCC actions, always_bcc, sender_bcc_maps, recipient_bcc_maps, virtual alias expansion
 *     (cleanup_map1n.c), REDIRECT, and the duplicate filter.
 * A table that cannot be read throws MappingFailure (mappings.ts); index.ts turns it into the reply.
 */
import type { CleanupRequest, EnvelopeRecipient } from '../protocol.js';
import { DROPPED_HEADERS } from './checks.js';
import { dropHeaders, scanHeaders } from './headers.js';
import { canonicalize, dedupe, expandVirtual, MapList, MappingFailure, masqueradeClass, splitResults, type Mappings } from './mappings.js';
import type { CleanupSettings } from './settings.js';
import type { Verdict } from './state.js';

/**
 * Postfix's original recipient: cleanup keeps each recipient as submitted (the RCPT record, or
 * the ORCP record a forwarding local(8) sent with it) before it rewrites anything; the delivery
 * agents log it as orig_to=<…> and write it as X-Original-To. out.ts stores it only where it
 * differs from the address queued.
 */
export function keepOriginals(request: CleanupRequest): CleanupRequest {
  return { ...request, recipients: request.recipients.map((r) => (r.original !== undefined ? r : { ...r, original: r.address })) };
}

/**
 * The DSN original recipient where the client gave none, as Postfix makes it up (RFC 3461
 * 5.2.1 allows it): smtpd writes "rfc822;" and the RCPT TO address as received (smtpd.c
 * rcpt_cmd); for the other submitters cleanup writes "rfc822;" (or "utf-8;" for a UTF-8 address
 * of an SMTPUTF8 message) and the address after canonical mapping (cleanup_addr_recipient).
 * A DSN-capable next hop gets it as ORCPT=, and notices report it as Original-Recipient.
 */
export function dsnOriginals(request: CleanupRequest, smtputf8: boolean): CleanupRequest {
  if (request.recipients.every((r) => r.orcpt || !r.address)) return request;
  const smtpd = request.origin === 'smtpd';
  return {
    ...request,
    recipients: request.recipients.map((r) => {
      if (r.orcpt || !r.address) return r;
      const address = smtpd ? r.original ?? r.address : r.address;
      const type = !smtpd && smtputf8 && /[^\x00-\x7f]/.test(address) ? 'utf-8' : 'rfc822';
      return { ...r, orcpt: `${type};${address}` };
    }),
  };
}

/**
 * A local submission (pickup): qualify envelope addresses as trivial-rewrite does in the local
 * context (append_at_myorigin; the empty recipient becomes $empty_address_recipient) and drop
 * Bcc/Resent-Bcc/Return-Path/Content-Length, before the common path.
 */
export function localSubmission(s: Pick<CleanupSettings, 'appendAtMyorigin' | 'myorigin' | 'emptyAddressRecipient'>, request: CleanupRequest): CleanupRequest {
  const qualify = (a: string) => qualifyLocal(s, a);
  const scan = scanHeaders(request.content);
  const dropped = dropHeaders(request.content, scan.end, DROPPED_HEADERS);
  return {
    ...request,
    sender: qualify(request.sender),
    recipients: request.recipients.map((r) => ({ ...r, address: qualify(r.address || s.emptyAddressRecipient) })),
    content: dropped.msg,
  };
}

/** An address qualified as trivial-rewrite does in the local context: append_at_myorigin. */
function qualifyLocal(s: Pick<CleanupSettings, 'appendAtMyorigin' | 'myorigin'>, a: string): string {
  return a && s.appendAtMyorigin && !a.includes('@') ? `${a}@${s.myorigin}` : a;
}

/**
 * A BCC address (always_bcc, sender_bcc_maps, recipient_bcc_maps, a BCC action) as Postfix's
 * cleanup_addr_bcc_dsn() queues it: qualified in the local context, then, with address
 * mappings on, canonical-mapped and masqueraded as an envelope recipient.
 */
export async function bccAddress(s: Pick<CleanupSettings, 'appendAtMyorigin' | 'myorigin'>, m: Mappings, address: string, mapOK: boolean, warn: (text: string) => void): Promise<string> {
  const a = qualifyLocal(s, address);
  return mapOK ? masqueradeClass(m, await canonicalize(m, a, 'envelope_recipient', warn), 'envelope_recipient') : a;
}

/** Canonical mapping and masquerading of the envelope sender and each recipient (cleanup_addr.c). */
export async function rewriteEnvelope(m: Mappings, request: CleanupRequest, warn: (text: string) => void): Promise<CleanupRequest> {
  const sender = masqueradeClass(m, await canonicalize(m, request.sender, 'envelope_sender', warn), 'envelope_sender');
  const recipients = [];
  for (const r of request.recipients) {
    const a = masqueradeClass(m, await canonicalize(m, r.address, 'envelope_recipient', warn), 'envelope_recipient');
    recipients.push(a === r.address ? r : { ...r, address: a });
  }
  return { ...request, sender, recipients };
}

/**
 * The recipients to queue: the envelope's, then the BCC recipients (BCC actions; always_bcc and
 * the BCC maps for new mail only), each through virtual_alias_maps; REDIRECT replaces them all by
 * one, the first recipient with the REDIRECT address;
 * duplicates removed (duplicate_filter_limit). Without `mapOK` (receive_override_options =
 * no_address_mappings) only the BCC actions are added. Each BCC address is made clean by
 * `clean` (bccAddress()) and gets DSN NOTIFY=NEVER, as cleanup_addr_bcc() asks for no
 * notification: the sender never hears of a BCC recipient.
 */
export async function outRecipients(m: Mappings, request: CleanupRequest, verdict: Verdict, mapOK: boolean, clean: (address: string) => Promise<string> = async (a) => a): Promise<EnvelopeRecipient[]> {
  let recipients: EnvelopeRecipient[] = request.recipients.map((r) => ({ address: r.address, ...(r.orcpt ? { orcpt: r.orcpt } : {}), ...(r.notify ? { notify: r.notify } : {}), ...(r.original !== undefined ? { original: r.original } : {}) }));
  const bcc: string[] = [...verdict.bcc, ...(request.bcc ?? [])];
  if (mapOK && request.origin !== 'bounce') {
    if (m.alwaysBcc) bcc.push(m.alwaysBcc);
    if (!m.senderBcc.empty && request.sender) {
      const v = await lookupOrFail(m.senderBcc, request.sender);
      if (v !== null) bcc.push(...splitResults(v));
    }
    if (!m.recipientBcc.empty) {
      for (const r of request.recipients) {
        const v = await lookupOrFail(m.recipientBcc, r.address);
        if (v !== null) bcc.push(...splitResults(v));
      }
    }
  }
  for (const address of bcc) recipients.push({ address: await clean(address), notify: ['NEVER'] });
  if (mapOK && !m.virtualAlias.empty) {
    const expanded: typeof recipients = [];
    for (const r of recipients) {
      for (const address of await expandVirtual(m, r.address)) expanded.push({ ...r, address });
    }
    recipients = expanded;
  }
  // Postfix's qmgr applies the REC_TYPE_RDR record to the queue file's first recipient and drops
  // the others (qmgr_message_resolve): only the address changes, its DSN NOTIFY and ORCPT stay.
  // A header_checks REDIRECT is written after smtpd's, and qmgr obeys the last one.
  const redirect = verdict.redirect ?? request.redirect ?? null;
  if (redirect) recipients = [{ ...recipients[0], address: redirect }];
  return dedupe(recipients, m.duplicateFilterLimit, m.enableOriginalRecipient);
}

async function lookupOrFail(maps: MapList, address: string): Promise<string | null> {
  try {
    return await maps.lookup(address);
  } catch (err) {
    throw new MappingFailure(`${maps.title} map lookup problem for ${address} -- message not accepted, try again later: ${(err as Error).message}`, 451, '4.3.0', 'Error: queue file write error');
  }
}
