/**
 * The Sendmail macros a milter may ask for, evaluated from what the receiving side knows
 * (Postfix: smtpd_milter_eval for smtpd_milters, cleanup_milter_eval for non_smtpd_milters),
 * with milter_macro_defaults filling the names nothing else answers. One evaluator for both
 * callers, so smtpd and cleanup send the same values for the same facts.
 */
import type { Config } from '../config/index.js';
import { valuesOf, type Params } from '../config/declared.js';
import type { ClientInfo, TlsInfo } from '../queue/types.js';
import type { MacroSource } from './milter.js';

/** What the milters know of the session (or the emulated one) at one point of the dialogue. */
export interface MilterContext {
  client: Pick<ClientInfo, 'name' | 'addr' | 'port'>;
  localAddr: string;
  localPort: number;
  helo: string;
  protocol: string;
  sender: string | null;
  recipient: string | null;
  recipients: string[];
  queueId: string | null;
  tls?: TlsInfo;
  login?: { method: string; username: string } | null;
  /** {client_port}/{daemon_port} are not sent when unknown (port 0: a local submission). */
  noPorts?: boolean;
}

/**
 * milter_macro_defaults: "name=value" or "{ name = value }" entries separated by comma or space;
 * a name is stored in its "{name}" form. A malformed entry stops start-up, as Postfix's fatal.
 */
export function parseMacroDefaults(text: string, warn: (t: string) => void = () => undefined): Map<string, string> {
  const out = new Map<string, string>();
  let i = 0;
  while (i < text.length) {
    const ch = text[i]!;
    if (ch === ',' || /\s/.test(ch)) { i++; continue; }
    let entry: string;
    if (ch === '{') {
      // "{name}=value" keeps the braces as part of the name; "{ name = value }" is one entry.
      const close = text.indexOf('}', i);
      if (close < 0) throw new Error(`malformed default macro entry: missing '}' in "${text}"`);
      if (text[close + 1] === '=') {
        let j = close + 1;
        while (j < text.length && text[j] !== ',' && !/\s/.test(text[j]!)) j++;
        entry = text.slice(i, j);
        i = j;
      } else {
        entry = text.slice(i + 1, close).trim();
        i = close + 1;
      }
    } else {
      let j = i;
      while (j < text.length && text[j] !== ',' && !/\s/.test(text[j]!)) j++;
      entry = text.slice(i, j);
      i = j;
    }
    const eq = entry.indexOf('=');
    if (eq <= 0) throw new Error(`malformed default macro entry: missing '=' in "${text}"`);
    let name = entry.slice(0, eq).trim();
    const value = entry.slice(eq + 1).trim();
    if (!name.startsWith('{')) name = `{${name}}`;
    if (out.has(name)) warn(`ignoring multiple default macro entries for ${name} in "${text}"`);
    else out.set(name, value);
  }
  return out;
}

/** What the macros read (smtpd and cleanup spread these into theirs). */
export const MACRO_SOURCE_PARAMS = {
  'myhostname': 'str',
  'milter_macro_daemon_name': 'str',
  'milter_macro_v': 'str',
} as const;

/** The macro evaluator for one moment of the dialogue, from the values read (or read here from a configuration). */
export function macroSource(from: Config | Params<typeof MACRO_SOURCE_PARAMS>, ctx: MilterContext, defaults: ReadonlyMap<string, string>): MacroSource {
  const p = valuesOf(from, MACRO_SOURCE_PARAMS, 'milter');
  const lookup = (name: string): string | undefined => {
    switch (name) {
      case 'j': return p.myhostname;
      case 'daemon_name': return p.milter_macro_daemon_name;
      case 'daemon_addr': return ctx.localAddr;
      case 'daemon_port': return ctx.noPorts ? undefined : String(ctx.localPort);
      case 'v': return p.milter_macro_v;
      case '_': return `${ctx.client.name} [${ctx.client.addr}]`;
      case 'client_addr': return ctx.client.addr;
      case 'client_name': return ctx.client.name;
      case 'client_ptr': return ctx.client.name;
      case 'client_port': return ctx.noPorts ? undefined : String(ctx.client.port);
      case 'i': return ctx.queueId ?? undefined;
      case 'tls_version': return ctx.tls?.protocol;
      case 'cipher': return ctx.tls?.cipher;
      case 'cipher_bits': return ctx.tls ? String(ctx.tls.usebits) : undefined;
      case 'auth_type': return ctx.login?.method;
      case 'auth_authen': return ctx.login?.username;
      case 'mail_addr': return ctx.sender ?? undefined;
      case 'rcpt_addr': return ctx.recipient ?? undefined;
      default: return undefined;
    }
  };
  return (name) => {
    // Called for every macro name of every event: no regular expression here.
    const braced = name.length > 1 && name.charCodeAt(0) === 0x7b && name.charCodeAt(name.length - 1) === 0x7d;
    const bare = braced ? name.slice(1, -1) : name;
    const v = lookup(bare);
    return v !== undefined || defaults.size === 0 ? v : defaults.get(braced ? name : `{${bare}}`);
  };
}
