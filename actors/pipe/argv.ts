/**
 * pipe(8) command-line macros: ${name}, $name and $(name); "$$" is a literal "$".
 *
 * Per message: ${sender} (null sender → null_sender=, MAILER-DAEMON by default), ${nexthop},
 * ${size}, ${queue_id}, ${client_address}, ${client_hostname}, ${client_port}, ${client_helo},
 * ${client_protocol}, ${sasl_method}, ${sasl_username}, ${sasl_sender}.
 * Per recipient — a word that holds one of these becomes one word per recipient:
 * ${recipient}, ${original_recipient}, ${user}, ${extension}, ${mailbox}, ${domain}.
 *
 * Flags: h folds ${domain}, ${nexthop} and the domain of ${recipient} to lower case; u folds
 * the local part of ${recipient}, ${user}, ${extension}, ${mailbox}; q quotes the local part of
 * ${sender} and ${recipient} as RFC 822 wants.
 *
 * An unknown macro name is a configuration error (Postfix expands it to nothing; a typo in
 * argv= then passes an empty word to the command, which we would rather say out loud).
 */
import { quoteLocal } from '../../src/address/quote.js';
export interface MessageFacts {
  sender: string;
  nexthop: string;
  size: number;
  queueId: string;
  client: { address: string; hostname: string; port: string; helo: string; protocol: string };
}

export interface RecipientFacts {
  address: string;
  original: string;
}

const MESSAGE_MACROS = new Set(['sender', 'nexthop', 'size', 'queue_id', 'client_address', 'client_hostname', 'client_port', 'client_helo', 'client_protocol', 'sasl_method', 'sasl_username', 'sasl_sender']);
const RECIPIENT_MACROS = new Set(['recipient', 'original_recipient', 'user', 'extension', 'mailbox', 'domain']);

const MACRO = /\$(?:\{([A-Za-z0-9_]+)\}|\(([A-Za-z0-9_]+)\)|([A-Za-z0-9_]+)|(\$))/g;

function split(address: string): { local: string; domain: string } {
  const at = address.lastIndexOf('@');
  return at < 0 ? { local: address, domain: '' } : { local: address.slice(0, at), domain: address.slice(at + 1) };
}

/** The words of argv= with macros expanded; a string names the problem. */
export function expandArgv(words: readonly string[], msg: MessageFacts, rcpts: readonly RecipientFacts[], flags: Set<string>, delimiters: string): string[] | string {
  const fold = (s: string, yes: boolean) => (yes ? s.toLowerCase() : s);
  const sender = msg.sender;
  const messageValue = (name: string): string => {
    switch (name) {
      case 'sender': return sender && flags.has('q') ? quoteLocal(sender) : sender;
      case 'nexthop': return fold(msg.nexthop, flags.has('h'));
      case 'size': return String(msg.size);
      case 'queue_id': return msg.queueId;
      case 'client_address': return msg.client.address;
      case 'client_hostname': return msg.client.hostname;
      case 'client_port': return msg.client.port;
      case 'client_helo': return msg.client.helo;
      case 'client_protocol': return msg.client.protocol;
      default: return ''; // sasl_*: no SASL in Postactor yet
    }
  };
  const recipientValue = (name: string, r: RecipientFacts): string => {
    const { local, domain } = split(r.address);
    const localFolded = fold(local, flags.has('u'));
    let user = localFolded;
    let extension = '';
    if (delimiters) {
      const k = [...localFolded].findIndex((ch) => delimiters.includes(ch));
      if (k > 0) { user = localFolded.slice(0, k); extension = localFolded.slice(k + 1); }
    }
    switch (name) {
      case 'recipient': {
        const a = localFolded + (r.address.includes('@') ? '@' + fold(domain, flags.has('h')) : '');
        return flags.has('q') ? quoteLocal(a) : a;
      }
      case 'original_recipient': return r.original;
      case 'user': return user;
      case 'extension': return extension;
      case 'mailbox': return localFolded;
      default: return fold(domain, flags.has('h')); // domain
    }
  };
  const out: string[] = [];
  for (const word of words) {
    let perRecipient = false;
    for (const m of word.matchAll(MACRO)) {
      const name = m[1] ?? m[2] ?? m[3];
      if (name === undefined) continue;
      if (RECIPIENT_MACROS.has(name)) perRecipient = true;
      else if (!MESSAGE_MACROS.has(name)) return `unknown command-line macro: $${name} in "${word}"`;
    }
    const expand = (r: RecipientFacts | null) => word.replace(MACRO, (_s, a?: string, b?: string, c?: string) => {
      const name = a ?? b ?? c;
      if (name === undefined) return '$';
      return RECIPIENT_MACROS.has(name) ? recipientValue(name, r!) : messageValue(name);
    });
    if (perRecipient) for (const r of rcpts) out.push(expand(r));
    else out.push(expand(null));
  }
  return out;
}
