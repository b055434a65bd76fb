/**
 * smtpd's side of anvil (Postfix's anvil_clnt calls in smtpd.c): per-client connection count
 * and rate limits checked before the greeting, message and recipient rate limits at MAIL and
 * RCPT. The counters live in a table shared by every smtpd thread of the service
 * (src/anvil/table.ts), so a check is a few operations in this thread.
 *
 * As Postfix: clients in smtpd_client_event_limit_exceptions (default $mynetworks) are not
 * counted at all; every other client is counted even when no limit is set (so rates stay
 * right if one is set later by a reload); events count whether or not they are accepted; a
 * limit is exceeded when the value is greater than it; 0 means no limit.
 */
import type * as net from 'node:net';
import type { Config } from '../config/index.js';
import { readParams, type Params } from '../config/declared.js';
import { buildNetworks, NetworkList } from '../net/networks.js';
import { clientKey, type AnvilTable, type ClientKey } from '../anvil/table.js';

/** A refusal: reply code and text (text with its enhanced status code), and the warning to log. */
export interface AnvilRefusal { code: number; text: string; warning: string }

/**
 * What smtpd's anvil side reads (smtpd declares these with its own: actors/smtpd/index.ts). The
 * event limit exceptions are read as written only when set (or the old
 * smtpd_client_connection_limit_exceptions is): unset, they are mynetworks.
 */
export const ANVIL_PARAMS = {
  'service_name': 'str',
  'myhostname': 'str',
  'smtpd_client_ipv4_prefix_length': 'int',
  'smtpd_client_ipv6_prefix_length': 'int',
  'smtpd_client_connection_count_limit': 'int',
  'smtpd_client_connection_rate_limit': 'int',
  'smtpd_client_message_rate_limit': 'int',
  'smtpd_client_recipient_rate_limit': 'int',
  'smtpd_client_auth_rate_limit': 'int',
  'smtpd_client_new_tls_session_rate_limit': 'int',
  'smtpd_client_event_limit_exceptions': 'str',
  'mynetworks': 'str',
  'mynetworks_style': 'str',
} as const;
type AnvilParams = Params<typeof ANVIL_PARAMS>;

export class SmtpdAnvil {
  private readonly exceptions: NetworkList;
  private readonly keys = new WeakMap<object, ClientKey>();
  private readonly service: string;
  private readonly hostname: string;
  private readonly v4Prefix: number;
  private readonly v6Prefix: number;
  private readonly countLimit: number;
  private readonly rateLimit: number;
  private readonly messageLimit: number;
  private readonly recipientLimit: number;
  private readonly authLimit: number;
  private readonly newTlsLimit: number;

  /** `p`: the values smtpd read (read here from the configuration when not given). */
  constructor(config: Config, private readonly table: AnvilTable, p: AnvilParams = readParams(config, ANVIL_PARAMS, 'smtpd')) {
    this.service = p.service_name;
    this.hostname = p.myhostname;
    this.v4Prefix = p.smtpd_client_ipv4_prefix_length;
    this.v6Prefix = p.smtpd_client_ipv6_prefix_length;
    const problem = smtpdAnvilProblem(config, p);
    if (problem !== null) throw new Error(problem);
    this.countLimit = p.smtpd_client_connection_count_limit;
    this.rateLimit = p.smtpd_client_connection_rate_limit;
    this.messageLimit = p.smtpd_client_message_rate_limit;
    this.recipientLimit = p.smtpd_client_recipient_rate_limit;
    this.authLimit = p.smtpd_client_auth_rate_limit;
    this.newTlsLimit = p.smtpd_client_new_tls_session_rate_limit;
    this.exceptions = eventLimitExceptions(config, p);
  }

  /**
   * A new connection (smtpd_proto, before the greeting): counts it, and answers the refusal
   * when the client is over its connection count or rate limit. Call disconnect() when the
   * session ends, whatever this answered. The refusal is made once the client's name is known
   * (its warning names host[addr]).
   */
  connect(session: object, addr: string): ((namaddr: string) => AnvilRefusal) | null {
    if (this.exceptions.has(addr)) return null;
    const key = clientKey(addr, this.v4Prefix, this.v6Prefix);
    if (!key) return null;
    const r = this.table.connect(key);
    if (!r) return null;
    this.keys.set(session, key);
    const reply = `4.7.0 ${this.hostname} Error: too many connections from ${addr}`;
    if (this.countLimit > 0 && r.count > this.countLimit) {
      return (namaddr) => ({ code: 421, text: reply, warning: `Connection concurrency limit exceeded: ${r.count} from ${namaddr} for service ${this.service}` });
    }
    if (this.rateLimit > 0 && r.rate > this.rateLimit) {
      return (namaddr) => ({ code: 421, text: reply, warning: `Connection rate limit exceeded: ${r.rate} from ${namaddr} for service ${this.service}` });
    }
    return null;
  }

  /** The session ended: one connection fewer for its client. */
  disconnect(session: object): void {
    const key = this.keys.get(session);
    if (!key) return;
    this.keys.delete(session);
    this.table.disconnect(key);
  }

  /** MAIL FROM: smtpd_client_message_rate_limit. */
  mail(session: object, addr: string, namaddr: string): AnvilRefusal | null {
    const key = this.keys.get(session);
    if (this.messageLimit <= 0 || !key) return null;
    const rate = this.table.event(key, 'message');
    if (rate === null || rate <= this.messageLimit) return null;
    return { code: 450, text: `4.7.1 Error: too much mail from ${addr}`, warning: `Message delivery request rate limit exceeded: ${rate} from ${namaddr} for service ${this.service}` };
  }

  /** RCPT TO and VRFY: smtpd_client_recipient_rate_limit. */
  rcpt(session: object, addr: string, namaddr: string): AnvilRefusal | null {
    const key = this.keys.get(session);
    if (this.recipientLimit <= 0 || !key) return null;
    const rate = this.table.event(key, 'recipient');
    if (rate === null || rate <= this.recipientLimit) return null;
    return { code: 450, text: `4.7.1 Error: too many recipients from ${addr}`, warning: `Recipient address rate limit exceeded: ${rate} from ${namaddr} for service ${this.service}` };
  }

  /** AUTH (before any other check of the command): smtpd_client_auth_rate_limit. */
  auth(session: object, addr: string, namaddr: string): AnvilRefusal | null {
    const key = this.keys.get(session);
    if (this.authLimit <= 0 || !key) return null;
    const rate = this.table.event(key, 'auth');
    if (rate === null || rate <= this.authLimit) return null;
    return { code: 450, text: `4.7.1 Error: too many AUTH commands from ${addr}`, warning: `AUTH command rate limit exceeded: ${rate} from ${namaddr} for service ${this.service}` };
  }

  /**
   * STARTTLS, before "220 Ready to start TLS": a client already over its new-TLS-session rate
   * gets 454 and no handshake (anvil's newtls_stat: looked at, not counted).
   */
  starttls(session: object, namaddr: string): AnvilRefusal | null {
    const key = this.keys.get(session);
    if (this.newTlsLimit <= 0 || !key) return null;
    if (this.table.rate(key, 'newtls') <= this.newTlsLimit) return null;
    return { code: 454, text: `4.7.0 Error: too many new TLS sessions from ${namaddr}`, warning: `Refusing STARTTLS request from ${namaddr} for service ${this.service}` };
  }

  /** Wrapper mode, before the handshake: true when the client is over its new-TLS-session rate. */
  wrapperRefused(addr: string): boolean {
    if (this.newTlsLimit <= 0 || this.exceptions.has(addr)) return false;
    const key = clientKey(addr, this.v4Prefix, this.v6Prefix);
    return key !== null && this.table.rate(key, 'newtls') > this.newTlsLimit;
  }

  /** The master.cf service name the counters are kept for. */
  get serviceName(): string {
    return this.service;
  }

  /**
   * A handshake done that made a new TLS session (not a resumed one): counted; past the limit
   * the session ends with 421 (Postfix: too late to save the CPU, but the next STARTTLS is
   * refused before its handshake).
   */
  newTls(session: object, namaddr: string): AnvilRefusal | null {
    const key = this.keys.get(session);
    if (this.newTlsLimit <= 0 || !key) return null;
    const rate = this.table.event(key, 'newtls');
    if (rate === null || rate <= this.newTlsLimit) return null;
    return { code: 421, text: `4.7.0 ${this.hostname} Error: too many new TLS sessions from ${namaddr}`, warning: `New TLS session rate limit exceeded: ${rate} from ${namaddr} for service ${this.service}` };
  }
}

/**
 * Wrapper mode (smtpd_tls_wrappermode): a client already over its new-TLS-session rate is
 * dropped before the handshake, with no reply (Postfix: "Refusing TLS service request"). Wraps
 * smtp-server's handshake step; `refused` decides and logs.
 */
export function refuseWrapperHandshakes(server: object, refused: (socket: net.Socket) => boolean): void {
  const s = server as { _upgrade?: (socket: net.Socket, cb: unknown) => void };
  const upgrade = s._upgrade;
  if (typeof upgrade !== 'function') return;
  s._upgrade = function (this: unknown, socket: net.Socket, cb: unknown) {
    if (!refused(socket)) return upgrade.call(this, socket, cb);
    // smtp-server lets go of the socket when it closes.
    socket.on('error', () => undefined);
    socket.destroy();
  };
}

type HandlerConn = {
  _server: {
    options: {
      postactorTls?: { use: boolean; discarded: boolean; context: unknown };
      postactorDialect?: { vrfyDisabled: boolean };
      postactorStarttlsRate?: (session: object) => AnvilRefusal | null;
      postactorVrfyRate?: (session: object) => AnvilRefusal | null;
    };
  };
  session: object;
  secure: boolean;
  send(code: number, text: string): void;
};
type Handler = (this: HandlerConn, command: Buffer | string, callback: () => void) => void;

let installed = false;

/**
 * Puts anvil's checks into the command handlers of tls.ts and dialect.ts (call after both are
 * installed), where Postfix has them:
 *  - STARTTLS: the new-TLS-session rate, after the syntax, "already active", "not implemented"
 *    and "not available" checks, before 220;
 *  - VRFY: the recipient rate, after "disabled" and the syntax check, before the answer.
 */
export function installAnvilHandlers(proto: Record<string, unknown>): void {
  if (installed) return;
  installed = true;
  const starttls = proto.handler_STARTTLS as Handler;
  proto.handler_STARTTLS = function (this: HandlerConn, command: Buffer | string, callback: () => void) {
    const t = this._server.options.postactorTls;
    const check = this._server.options.postactorStarttlsRate;
    if (check && String(command).trim().split(/\s+/).length === 1 && !this.secure && t?.use && !t.discarded && t.context !== null) {
      const over = check(this.session);
      if (over) {
        this.send(over.code, over.text);
        return callback();
      }
    }
    return starttls.call(this, command, callback);
  } satisfies Handler;
  const vrfy = proto.handler_VRFY as Handler;
  proto.handler_VRFY = function (this: HandlerConn, command: Buffer | string, callback: () => void) {
    const check = this._server.options.postactorVrfyRate;
    const hasArg = String(command).trim().split(/\s+/).length > 1;
    if (check && hasArg && !this._server.options.postactorDialect?.vrfyDisabled) {
      const over = check(this.session);
      if (over) {
        this.send(over.code, over.text);
        return callback();
      }
    }
    return vrfy.call(this, command, callback);
  } satisfies Handler;
}

/** What in the configuration stops anvil's checks (master's check, before any thread starts), or null. */
export function smtpdAnvilProblem(config: Config, p: AnvilParams = readParams(config, ANVIL_PARAMS, 'smtpd')): string | null {
  const v4 = p.smtpd_client_ipv4_prefix_length, v6 = p.smtpd_client_ipv6_prefix_length;
  if (v4 < 0 || v4 > 32) return `smtpd_client_ipv4_prefix_length = ${v4}: bad IPv4 address prefix length (0..32)`;
  if (v6 < 0 || v6 > 128) return `smtpd_client_ipv6_prefix_length = ${v6}: bad IPv6 address prefix length (0..128)`;
  try {
    eventLimitExceptions(config, p);
  } catch (err) {
    return (err as Error).message;
  }
  return null;
}

/**
 * smtpd_client_event_limit_exceptions: by default (it and the old
 * smtpd_client_connection_limit_exceptions unset) $mynetworks, with mynetworks_style when
 * mynetworks is empty; otherwise the list given (addresses and networks).
 */
function eventLimitExceptions(config: Config, p: AnvilParams): NetworkList {
  const name = 'smtpd_client_event_limit_exceptions';
  if (!config.isSet(name) && !config.isSet('smtpd_client_connection_limit_exceptions')) {
    const nets = buildNetworks(p.mynetworks, p.mynetworks_style);
    if (nets.errors.length) throw new Error(`mynetworks: ${nets.errors.join('; ')}`);
    return nets.networks;
  }
  const list = new NetworkList();
  for (const item of p[name].split(/[\s,]+/).filter(Boolean)) {
    const err = list.add(item);
    if (err) throw new Error(`${name} = ${p[name]}: ${err} (Postactor takes addresses and networks only)`);
  }
  return list;
}
