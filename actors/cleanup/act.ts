/**
 * What one header_checks / body_checks action does to the message (Postfix's cleanup_act() in
 * cleanup_message.c): log it as Postfix's cleanup logs it, record HOLD, DISCARD, REDIRECT,
 * FILTER and BCC in the message's verdict, and tell the caller whether the header or body line
 * is kept, dropped (IGNORE) or replaced, or the message refused (REJECT, DEFER).
 */
import { maillog } from '../../src/log/maillog.js';
import type { CleanupRequest } from '../protocol.js';
import { logForm, type CheckAction } from './checks.js';
import { splitResults } from './mappings.js';
import type { Failure, Verdict } from './state.js';

const log = maillog('cleanup');

/** How an action changes the header or body line it matched. */
export type Edit = { replace?: string; prepend?: string; drop?: boolean };

/** "ID: action: header X from client; from=<s> to=<r> proto=P helo=<h>: text", as Postfix's cleanup logs it. */
export function actionLog(request: CleanupRequest, action: string, cls: string, input: string, text: string): string {
  const c = request.client;
  const remote = request.origin === 'smtpd' || request.origin === 'qmqpd';
  const origin = c && remote ? `${c.name}[${c.addr}]` : 'local';
  // Postfix logs state->recip: the last envelope recipient cleanup was given.
  const rcpt = request.recipients[request.recipients.length - 1]?.address;
  let line = `${request.queueId}: ${action}: ${cls} ${logForm(input)} from ${origin}; from=<${request.sender}>`;
  if (rcpt !== undefined) line += ` to=<${rcpt}>`;
  // qmqpd has no HELO name, so no helo=<> (as Postfix's cleanup logs only what it was given).
  if (c && remote) line += ` proto=${c.protocol}${request.origin === 'smtpd' ? ` helo=<${c.helo}>` : ''}`;
  return text ? `${line}: ${text}` : line;
}

/**
 * Applies one check action. Returns a failure (REJECT, DEFER), or how the input changes:
 * 'keep', 'drop' (IGNORE) or replacement / prepended text. `logAs` prefixes the logged action
 * (milter_header_checks: "milter-header-", as cleanup_milter.c logs "ID: milter-header-reject: …").
 */
export function applyAction(request: CleanupRequest, verdict: Verdict, action: CheckAction, cls: string, input: string, map = `${cls}_checks`, logAs = ''): Failure | Edit {
  switch (action.kind) {
    case 'dunno': return {};
    case 'reject':
      log.info(actionLog(request, `${logAs}reject`, cls, input, `${action.dsn} ${action.text}`));
      return { ok: false, code: action.dsn.startsWith('4') ? 451 : 550, dsn: action.dsn, text: action.text };
    case 'defer':
      log.info(actionLog(request, `${logAs}reject`, cls, input, `${action.dsn} ${action.text}`));
      return { ok: false, code: 451, dsn: action.dsn, text: action.text };
    case 'warn': log.info(actionLog(request, `${logAs}warning`, cls, input, action.text)); return {};
    case 'info': log.info(actionLog(request, `${logAs}info`, cls, input, action.text)); return {};
    case 'hold':
      log.info(actionLog(request, `${logAs}hold`, cls, input, action.text));
      verdict.hold = true;
      return {};
    case 'discard':
      log.info(actionLog(request, `${logAs}discard`, cls, input, action.text));
      verdict.discard = true;
      return {};
    case 'redirect':
      log.info(actionLog(request, `${logAs}redirect`, cls, input, action.address));
      verdict.redirect = action.address;
      return {};
    case 'filter':
      log.info(actionLog(request, `${logAs}filter`, cls, input, action.nexthop));
      verdict.filter = action.nexthop;
      return {};
    case 'bcc':
      verdict.bcc.push(...splitResults(action.address));
      return {};
    case 'prepend': return { prepend: action.text };
    case 'replace': return { replace: action.text };
    case 'ignore': return { drop: true };
    case 'unknown':
      log.warn(`${request.queueId}: unknown command in ${map} map: ${action.value}`);
      return {};
  }
}
