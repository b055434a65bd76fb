/**
 * End of message through a list of milters, for whichever side runs them (smtpd for
 * smtpd_milters, cleanup for non_smtpd_milters): headers, body and EOM go to each milter in
 * turn, each milter's edits are applied before the next one sees the message, and the envelope
 * edits are collected. Postfix's cleanup applies the same edits to the queue file.
 */
import { applyEdits, formatMessage, parseMessage, type EnvelopeEdits } from './message.js';
import type { MacroSource, Milters, Verdict } from './milters.js';

export interface ContentOutcome {
  /** null: continue (accept); 'D' discard; otherwise a reject/tempfail reply or 'S'. */
  verdict: Verdict;
  /** The message as the milters left it (the input itself when nothing changed). */
  content: Uint8Array;
  env: EnvelopeEdits;
  /** The header fields the milters added or changed ("Name: value", folded lines joined by "\n"), for milter_header_checks. */
  milterHeaders: string[];
}

export async function filterContent(milters: Milters, content: Uint8Array, macros: MacroSource, warn: (t: string) => void): Promise<ContentOutcome> {
  const msg = parseMessage(content);
  const env: EnvelopeEdits = { sender: null, add: [], del: [], quarantine: null };
  let edited = false;
  const milterHeaders: string[] = [];
  const verdict = await milters.content(msg.headers, msg.body, macros, (edits) => {
    if (edits.some((e) => e.op !== 'quarantine' && e.op !== 'chgfrom' && e.op !== 'addrcpt' && e.op !== 'delrcpt')) edited = true;
    for (const e of edits) {
      if ((e.op === 'addheader' || e.op === 'insheader' || e.op === 'chgheader') && e.value !== '') {
        milterHeaders.push(`${e.name}: ${e.value.replace(/^[ \t]/, '').replace(/\r\n/g, '\n')}`);
      }
    }
    applyEdits(msg, edits, env, warn);
    return msg;
  });
  return { verdict, content: edited ? new Uint8Array(formatMessage(msg)) : content, env, milterHeaders };
}

/** A recipient as the queue keeps it (DSN NOTIFY and ORCPT). */
export interface DsnRecipient { address: string; notify?: string[]; orcpt?: string }

/** The recipients after the milters' deletions and additions; a kept recipient keeps its DSN settings. */
export function editRecipients<R extends DsnRecipient>(recipients: R[], env: EnvelopeEdits): DsnRecipient[] {
  const del = new Set(env.del.map((a) => a.toLowerCase()));
  const kept: DsnRecipient[] = recipients.filter((r) => !del.has(r.address.toLowerCase()));
  for (const a of env.add) kept.push({ address: a.recipient, ...(a.notify ? { notify: a.notify } : {}), ...(a.orcpt ? { orcpt: a.orcpt } : {}) });
  return kept;
}
