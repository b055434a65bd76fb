/**
 * SMTP AUTH in smtpd (RFC 4954), with Dovecot as the authentication server, as Postfix's
 * smtpd_sasl_proto.c / smtpd_sasl_glue.c / xsasl_dovecot_server.c do it.
 *
 *   saslSettings(config, errors)   the smtpd_sasl_* parameters, checked at start-up (in
 *                                  src/smtpd/sasl-settings.ts: master checks them too)
 *   SmtpdSasl                      one per smtpd thread: the Dovecot connection, the EHLO
 *                                  keywords, the AUTH exchange
 *   installSasl()                  patches smtp-server's EHLO and AUTH handlers (once per thread)
 *
 * SASL is "active" in a session when smtpd_sasl_auth_enable = yes and, with smtpd_tls_auth_only
 * = yes, the session is encrypted. Only then is AUTH announced (not to
 * smtpd_sasl_exceptions_networks, which may still use it) and accepted; otherwise AUTH gets
 * "503 5.5.1 Error: authentication not enabled", as Postfix (with SASL compiled in) answers.
 *
 * The mechanisms are Dovecot's (its MECH lines), filtered by smtpd_sasl_security_options (or
 * smtpd_sasl_tls_security_options when encrypted) and smtpd_sasl_mechanism_filter. Every
 * challenge and response goes through unchanged: Postactor never sees a password.
 *
 * Where Postfix would die ("fatal: no SASL authentication mechanisms" when Dovecot cannot be
 * reached at connect time), Postactor logs Postfix's warning, does not announce AUTH, and an
 * AUTH gets "454 4.7.0 Temporary authentication failure: …": the session and the thread live on.
 */
import { metrics } from '../../src/metrics/thread.js';

import { maillog } from '../../src/log/maillog.js';
import { AuthUnavailable, DovecotAuth, isBase64, type AuthStep, type Mechanism } from '../../src/sasl/dovecot.js';
import { smtpConnectionPrototype } from './engine.js';
import type { SaslSettings } from '../../src/smtpd/sasl-settings.js';

const log = maillog('smtpd');

/** A successful login: what permit_sasl_authenticated, the logs and Received look at. */
export interface SaslLogin { method: string; username: string }

/** The parts of smtp-server's connection this file uses. */
type Conn = {
  _server: { options: { postactorSasl?: SmtpdSasl } };
  session: { user?: unknown; envelope: { mailFrom: unknown }; remoteAddress: string; localAddress: string; paEhloExtra?: string[] } & object;
  secure: boolean;
  _nextHandler: ((command: Buffer | string, callback: () => void) => void) | false;
  send(code: number, text?: string, context?: unknown): void;
};
type Handler = (this: Conn, command: Buffer | string, callback: () => void) => void;

/** The login of a session, or null. */
export function saslLogin(session: object): SaslLogin | null {
  const u = (session as { user?: unknown }).user;
  return u && typeof u === 'object' && 'method' in u ? (u as SaslLogin) : null;
}

export class SmtpdSasl {
  private readonly dovecot: DovecotAuth;

  constructor(readonly settings: SaslSettings, private readonly namaddr: (session: object) => string) {
    this.dovecot = new DovecotAuth(settings.path, { timeoutMs: 10_000 });
  }

  /** SASL is active in this session (Postfix's smtpd_sasl_is_active). */
  active(secure: boolean): boolean {
    return this.settings.enabled && (!this.settings.tlsAuthOnly || secure);
  }

  /** The mechanisms to offer; throws AuthUnavailable when Dovecot cannot be reached. */
  async mechanisms(secure: boolean): Promise<string[]> {
    const options = secure ? this.settings.tlsOptions : this.settings.options;
    const ok = (m: Mechanism) => options.every((o) => m.flags.has(o.flag) === o.require);
    return (await this.dovecot.mechanisms()).filter(ok).map((m) => m.name).filter(this.settings.mechanismFilter);
  }

  /** The EHLO keywords for AUTH in this session ([] when not announced). */
  async keywords(session: Conn['session'], secure: boolean): Promise<string[]> {
    const s = this.settings;
    if (!this.active(secure) || s.discarded || s.exceptions?.has(session.remoteAddress)) return [];
    let mechs: string[];
    try {
      mechs = await this.mechanisms(secure);
    } catch (err) {
      log.warn((err as Error).message);
      return [];
    }
    if (mechs.length === 0) {
      log.warn('no SASL authentication mechanisms');
      return [];
    }
    const list = mechs.join(' ');
    return s.brokenClients ? [`AUTH ${list}`, `AUTH=${list}`] : [`AUTH ${list}`];
  }

  /** The AUTH command, its checks in Postfix's order, then the exchange. */
  command(conn: Conn, args: string[], callback: () => void): void {
    const reply = (code: number, text: string) => {
      conn.send(code, text);
      callback();
    };
    if (!this.active(conn.secure) || this.settings.discarded) return reply(503, '5.5.1 Error: authentication not enabled');
    if (conn.session.envelope.mailFrom) return reply(503, '5.5.1 Error: MAIL transaction in progress');
    if (saslLogin(conn.session)) return reply(503, '5.5.1 Error: already authenticated');
    if (args.length < 1 || args.length > 2) return reply(501, '5.5.4 Syntax: AUTH mechanism');
    void this.exchange(conn, args[0]!, args[1], callback);
  }

  /**
   * One authentication: relay challenges (334) and responses between client and Dovecot until
   * Dovecot says OK or FAIL. `release` lets smtp-server read the next line; each continuation
   * line comes with its own.
   */
  private async exchange(conn: Conn, method: string, initial: string | undefined, callback: () => void): Promise<void> {
    let release = callback;
    const finish = (code: number, text: string) => {
      conn._nextHandler = false;
      conn.send(code, text);
      release();
    };
    const failed = (reason: string, user: string | null, temp = false) => {
      metrics().smtpdSaslFailures.inc();
      metrics().smtpdSasl.inc({ method: method.toUpperCase(), result: temp ? 'tempfail' : 'failure' });
      log.warn(`${this.namaddr(conn.session)}: SASL ${method} authentication failed: ${reason}, sasl_username=${user ?? '(unavailable)'}`);
      if (temp) finish(454, `4.7.0 Temporary authentication failure: ${reason}`);
      else finish(535, `5.7.8 Error: authentication failed: ${reason}`);
    };
    /** Sends a challenge; resolves with the client's answer line. */
    const ask = (challenge: string) => new Promise<string>((resolve) => {
      conn._nextHandler = (line, done) => {
        release = done;
        resolve(String(line).replace(/\r?\n$/, ''));
      };
      conn.send(334, challenge);
      const r = release;
      r();
    });
    try {
      const mechs = await this.mechanisms(conn.secure);
      if (!mechs.includes(method.toUpperCase())) return failed('Invalid authentication mechanism', null);
      if (initial !== undefined && initial !== '=' && !isBase64(initial)) return failed('Invalid base64 data in initial response', null);
      let step: AuthStep = await this.dovecot.start({
        mech: method.toUpperCase(),
        service: this.settings.service,
        lip: conn.session.localAddress ?? '',
        rip: conn.session.remoteAddress,
        secured: conn.secure,
        ...(initial !== undefined ? { resp: initial } : {}),
      });
      while (step.kind === 'cont') {
        const answer = await ask(step.challenge);
        if (answer.length > this.settings.responseLimit) return finish(500, '5.5.6 SASL response limit exceeded');
        if (answer === '*') {
          log.warn(`${this.namaddr(conn.session)}: SASL ${method} authentication aborted`);
          return finish(501, '5.7.0 Authentication aborted');
        }
        if (!isBase64(answer) && answer !== '') return failed('Invalid base64 data in continued response', null);
        step = await this.dovecot.next(step.id, answer);
      }
      if (step.kind === 'fail') return failed(step.reason || '(reason unavailable)', step.user);
      if (!step.user) {
        log.warn('missing Dovecot server OK username field');
        return failed('Authentication backend error', null);
      }
      // smtp-server keeps session.user until STARTTLS, which forgets it (RFC 3207), as Postfix does.
      (conn.session as { user?: SaslLogin }).user = { method, username: printable(step.user) };
      metrics().smtpdSasl.inc({ method: method.toUpperCase(), result: 'success' });
      finish(235, '2.7.0 Authentication successful');
    } catch (err) {
      // Dovecot unreachable or gone: a temporary failure, never a dead thread.
      const text = (err as Error).message;
      log.warn(text);
      failed(err instanceof AuthUnavailable && !text.startsWith('SASL: ') ? text : "Can't connect to authentication server", null, true);
    }
  }
}

/** Postfix's printable(): control and non-ASCII characters become '?'. */
function printable(s: string): string {
  return s.replace(/[^\x20-\x7e]/g, '?');
}

let installed = false;

/** Patches smtp-server's AUTH and EHLO handlers (once per thread). */
export async function installSasl(): Promise<void> {
  if (installed) return;
  installed = true;
  const proto = smtpConnectionPrototype();

  proto.handler_AUTH = function (this: Conn, command: Buffer | string, callback: () => void) {
    // smtpd_client_auth_rate_limit (src/smtpd/anvil.ts) comes before every other check.
    const overRate = (this._server.options as { postactorAuthRate?: (session: object) => { code: number; text: string } | null }).postactorAuthRate?.(this.session);
    if (overRate) {
      this.send(overRate.code, overRate.text);
      return callback();
    }
    const sasl = this._server.options.postactorSasl;
    if (!sasl) {
      this.send(503, '5.5.1 Error: authentication not enabled');
      return callback();
    }
    sasl.command(this, String(command).trim().split(/\s+/).slice(1), callback);
  } satisfies Handler;

  // EHLO: ask Dovecot for the mechanisms first, so the (synchronous) reply can list them.
  const ehlo = proto.handler_EHLO as Handler;
  proto.handler_EHLO = function (this: Conn, command: Buffer | string, callback: () => void) {
    const sasl = this._server.options.postactorSasl;
    if (!sasl?.settings.enabled) return ehlo.call(this, command, callback);
    void sasl.keywords(this.session, this.secure).then((keywords) => {
      const other = (this.session.paEhloExtra ?? []).filter((k) => !/^AUTH[ =]/.test(k));
      this.session.paEhloExtra = [...other, ...keywords];
      ehlo.call(this, command, callback);
    });
  } satisfies Handler;
}
