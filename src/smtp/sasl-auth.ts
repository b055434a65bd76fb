/**
 * SMTP AUTH in the smtp/lmtp client, with Postfix's outcomes (smtp_sasl_proto.c,
 * smtp_sasl_glue.c): no credentials for the host, or a server without AUTH, means talking as
 * strangers; a server whose mechanisms the security options all exclude, or that rejects the
 * credentials, fails the session with Postfix's texts. With smtp_sasl_auth_soft_bounce (the
 * default) a 5xx rejection becomes 4xx, so a wrong password defers instead of bouncing.
 */
import { authExchange, chooseMechanism, type SaslCredentials, type SaslPolicy, type Talk } from '../sasl/client.js';
import type { SmtpReply } from './reply.js';

export interface SaslClientSettings {
  /** smtp_sasl_security_options + smtp_sasl_mechanism_filter, for a session without TLS. */
  policy: SaslPolicy;
  /** The same with smtp_sasl_tls_security_options, for a TLS session (used once TLS is on). */
  tlsPolicy: SaslPolicy;
  softBounce: boolean;
  /** smtp_sender_dependent_authentication: connections are not reused. */
  senderDependent: boolean;
}

export class SaslFailure {
  constructor(readonly reply: SmtpReply, readonly reason: string) {}
}

interface Peer { host: string; addr: string; port: number }

export async function saslAuthenticate(
  offered: readonly string[], h: Peer, credentials: (h: Peer) => Promise<SaslCredentials | null>,
  settings: SaslClientSettings, talk: Talk, warn: (text: string) => void, tls = false,
): Promise<void> {
  const creds = await credentials(h);
  if (creds === null || offered.length === 0) return;
  const mech = chooseMechanism(offered, tls ? settings.tlsPolicy : settings.policy);
  if (mech === null) {
    warn(`${h.host}[${h.addr}]:${h.port} offered no supported AUTH mechanisms: '${offered.join(' ')}'`);
    const text = `SASL authentication failed: server ${h.host}[${h.addr}] offered no compatible authentication mechanisms for this type of connection security`;
    throw new SaslFailure({ code: 450, enhanced: '4.7.0', text }, text);
  }
  const out = await authExchange(mech, creds, talk);
  if (out.ok) return;
  if (out.loop) {
    const text = `SASL authentication failed; authentication protocol loop with server ${h.host}[${h.addr}]`;
    throw new SaslFailure({ code: 450, enhanced: '4.3.0', text }, text);
  }
  const reason = `SASL authentication failed; server ${h.host}[${h.addr}] said: ${out.reply.line}`;
  let code = out.reply.code >= 400 && out.reply.code < 600 ? out.reply.code : 450;
  let enhanced = out.reply.enhanced ?? `${Math.floor(code / 100)}.7.0`;
  if (settings.softBounce && code >= 500) {
    code -= 100;
    enhanced = `4${enhanced.slice(1)}`;
  }
  throw new SaslFailure({ code, enhanced, text: reason }, reason);
}
