/**
 * ETRN (RFC 1985; Postfix's smtpd.c etrn_cmd): a client asks that the mail queued for a
 * destination be delivered now. In Postfix's order:
 *   - smtpd_helo_required and no HELO/EHLO yet: "503 Error: send HELO/EHLO first";
 *   - inside a MAIL transaction: "503 Error: MAIL transaction in progress";
 *   - not exactly one argument: "500 Syntax: ETRN domain";
 *   - one leading "@" or "#" is dropped (RFC 1985's forms); what is left must be a host name or,
 *     as Postfix extends it, an address literal "[1.2.3.4]": else "501 Error: invalid parameter
 *     syntax";
 *   - smtpd_etrn_restrictions (with the client and helo lists first under smtpd_delay_reject):
 *     their reply, logged "NOQUEUE: reject: ETRN from …";
 *   - the flush service's send_site (src/flush/client.ts): "250 Queuing started"; a destination
 *     fast_flush_domains does not list: "459 <domain>: service unavailable" and a warning
 *     "reject: ETRN domain... from client"; a bad request: "458 Unable to queue messages" and
 *     "bad ETRN domain... from client"; no flush service: 458 and "unable to talk to fast flush
 *     service".
 * These replies carry no enhanced status code, as Postfix's do not (RFC 1985 predates them).
 * ETRN is announced in EHLO after VRFY unless smtpd_discard_ehlo_keywords names it (index.ts),
 * and counts as a junk command for the error limits (limits.ts), as in Postfix.
 */
import type { FlushStatus } from '../../src/flush/protocol.js';
import { etrnSyntax } from '../../src/flush/destination.js';

/** dialect.ts sends a reply with this context as it is (no enhanced status code added). */
export const VERBATIM = 'POSTFIX_VERBATIM';

/** What the ETRN handler needs from smtpd (index.ts). */
export interface EtrnHooks {
  heloRequired: boolean;
  /** smtpd_etrn_restrictions (and the delayed client/helo lists): the reply to refuse with, or null. */
  check(session: object, domain: string): Promise<{ code: number; text: string } | null>;
  /** The flush service's send_site. */
  sendSite(site: string): Promise<FlushStatus>;
  namaddr(session: object): string;
  warn(text: string): void;
}

type Conn = {
  _server: { options: { postactorEtrn?: EtrnHooks } };
  session: { envelope: { mailFrom?: unknown } };
  hostNameAppearsAs?: string | false;
  send(code: number, data: unknown, context?: unknown): void;
};

type Handler = (this: Conn, command: Buffer | string, callback: () => void) => void;

/** Installs handler_ETRN on smtp-server's connection class (once per thread). */
export function installEtrn(proto: Record<string, unknown>): void {
  proto.handler_ETRN = function (this: Conn, command: Buffer | string, callback: () => void) {
    const reply = (code: number, text: string) => {
      this.send(code, text, VERBATIM);
      callback();
    };
    const hooks = this._server.options.postactorEtrn;
    const args = String(command).trim().split(/\s+/).slice(1);
    const parsed = etrnSyntax(args, Boolean(this.session.envelope.mailFrom), Boolean(hooks?.heloRequired) && !this.hostNameAppearsAs);
    if ('code' in parsed) return reply(parsed.code, parsed.text);
    const domain = parsed.domain;
    if (!hooks) return reply(458, 'Unable to queue messages');
    void (async () => {
      const refusal = await hooks.check(this.session, domain);
      if (refusal) return reply(refusal.code, refusal.text);
      const status = await hooks.sendSite(domain);
      const who = hooks.namaddr(this.session);
      switch (status) {
        case 'ok': return reply(250, 'Queuing started');
        case 'deny':
          hooks.warn(`reject: ETRN ${domain.slice(0, 100)}... from ${who}`);
          return reply(459, `<${domain}>: service unavailable`);
        case 'bad':
          hooks.warn(`bad ETRN ${domain.slice(0, 100)}... from ${who}`);
          return reply(458, 'Unable to queue messages');
        default:
          hooks.warn('unable to talk to fast flush service');
          return reply(458, 'Unable to queue messages');
      }
    })().catch((err: Error) => {
      hooks.warn(`ETRN: ${err.message}`);
      reply(458, 'Unable to queue messages');
    });
  } satisfies Handler;
}
