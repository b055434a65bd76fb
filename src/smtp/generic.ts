/**
 * smtp_generic_maps (generic(5), Postfix's smtp_map11.c): the smtp client's address rewriting on
 * the way out, typically a local address made a global one ("root@box.local" → "me@example.com")
 * when mail leaves for the Internet. It rewrites the envelope sender and recipients (MAIL FROM,
 * RCPT TO) and the addresses in the message's address headers (From, To, Cc, Reply-To, …: the
 * sender and recipient header classes), nothing else: the queue, the logs (to=<…> stays the
 * queued recipient) and DSN ORCPT keep the addresses as they were.
 *
 * Lookup order (generic(5)): user+ext@domain, user@domain, then user+ext and user when the
 * domain is $myorigin, $mydestination, $inet_interfaces or $proxy_interfaces, then @domain. The
 * value replaces the whole address; the first table with an answer wins. A table that fails
 * makes the delivery a temporary failure (never a message sent with unmapped addresses).
 */
import { RECIPIENT_HEADERS, rewriteAddressList, SENDER_HEADERS } from '../address/header-addresses.js';
import { DomainList } from '../address/domain.js';
import { literalAddress, ownAddresses } from '../address/interfaces.js';
import type { ParamSpec, Params } from '../config/declared.js';
import { lookupAddress, openTable, TableError, type LookupTable } from '../maps/index.js';

/** What the smtp client reads for smtp_generic_maps (src/config/declared.ts). */
export const SMTP_GENERIC_PARAMS = {
  'smtp_generic_maps': 'list', 'myorigin': 'str', 'mydestination': 'list', 'recipient_delimiter': 'str',
  'inet_interfaces': 'list', 'proxy_interfaces': 'list',
} as const satisfies ParamSpec;

/** The lmtp client's: lmtp_generic_maps. */
export const LMTP_GENERIC_PARAMS = {
  'lmtp_generic_maps': 'list', 'myorigin': 'str', 'mydestination': 'list', 'recipient_delimiter': 'str',
  'inet_interfaces': 'list', 'proxy_interfaces': 'list',
} as const satisfies ParamSpec;

/** Which client, with the values it declared. */
export type GenericParams =
  | { prefix: 'smtp'; params: Params<typeof SMTP_GENERIC_PARAMS> }
  | { prefix: 'lmtp'; params: Params<typeof LMTP_GENERIC_PARAMS> };

/**
 * The smtp or lmtp client's generic maps, or null when none is set. The user form is looked
 * up for $myorigin, $mydestination and our [address] literals.
 */
export function genericMaps(a: GenericParams): GenericMaps | null {
  const p = a.params;
  const maps = a.prefix === 'smtp' ? a.params.smtp_generic_maps : a.params.lmtp_generic_maps;
  if (maps.length === 0) return null;
  const local = new DomainList([p.myorigin, ...p.mydestination], false);
  const own = ownAddresses(p.inet_interfaces, p.proxy_interfaces);
  return new GenericMaps({
    maps,
    recipientDelimiter: p.recipient_delimiter,
    localDomain: (d) => {
      const lit = literalAddress(d);
      return lit !== null ? own.has(lit) : local.has(d);
    },
  });
}

/**
 * The envelope's sender and recipients mapped in place (smtp_map11_external for each, as
 * Postfix's smtp_proto.c does before MAIL FROM). A table that fails is warned about as
 * "PREFIX_generic_maps: …" and false comes back: the caller defers every recipient with
 * Postfix's 4.3.0 "address mapping lookup failure".
 */
export async function mapEnvelope(generic: GenericMaps, env: { sender: string; recipients: string[] }, prefix: 'smtp' | 'lmtp', log: { warn(text: string): void }): Promise<boolean> {
  try {
    env.sender = await generic.address(env.sender);
    env.recipients = await Promise.all(env.recipients.map((a) => generic.address(a)));
    return true;
  } catch (e) {
    if (!(e instanceof TableError)) throw e;
    log.warn(`${prefix}_generic_maps: ${e.message}`);
    return false;
  }
}

/** The deferral of a delivery whose envelope could not be mapped (mapEnvelope). */
export const MAPPING_FAILURE = { status: 'deferred', dsn: '4.3.0', reason: 'address mapping lookup failure', relay: 'none' } as const;

export interface GenericSettings {
  /** smtp_generic_maps, as written. */
  maps: string[];
  recipientDelimiter: string;
  /** Whether a domain is one of ours ($myorigin, $mydestination, our [address] literals). */
  localDomain: (domain: string) => boolean | Promise<boolean>;
}

export class GenericMaps {
  private readonly tables: LookupTable[];

  constructor(private readonly s: GenericSettings) {
    this.tables = s.maps.map((spec) => openTable(spec));
  }

  /** The mapped address, or the address itself; the null sender stays null. */
  async address(address: string): Promise<string> {
    if (address === '') return address;
    for (const table of this.tables) {
      const r = await lookupAddress(table, address, { recipientDelimiter: this.s.recipientDelimiter, localDomain: this.s.localDomain });
      if (r.found) return r.value.trim();
    }
    return address;
  }

  /**
   * The content with the addresses of its address headers mapped; the same buffer when nothing
   * changed. Only the header section is looked at; headers are rewritten in place, with their
   * folding, phrases and comments as they were.
   */
  async content(content: Buffer): Promise<Buffer> {
    const buf = content;
    const end = headerEnd(buf);
    const parts: Buffer[] = [];
    let last = 0;
    let changed = false;
    for (let start = 0; start < end;) {
      const stop = headerStop(buf, start, end);
      const colon = buf.indexOf(0x3a, start);
      if (colon > start && colon < stop) {
        const name = buf.toString('latin1', start, colon).trim().toLowerCase();
        if (SENDER_HEADERS.has(name) || RECIPIENT_HEADERS.has(name)) {
          const value = buf.toString('utf8', colon + 1, stop);
          const next = await rewriteAddressList(value, (a) => this.address(a));
          if (next !== value) {
            parts.push(buf.subarray(last, colon + 1), Buffer.from(next, 'utf8'));
            last = stop;
            changed = true;
          }
        }
      }
      start = stop;
    }
    if (!changed) return content;
    parts.push(buf.subarray(last));
    return Buffer.concat(parts);
  }
}

/** The end of the header section: the start of its empty line (or the whole content). */
function headerEnd(buf: Buffer): number {
  if (buf.length >= 2 && buf[0] === 0x0d && buf[1] === 0x0a) return 0;
  const blank = buf.indexOf('\r\n\r\n');
  return blank < 0 ? buf.length : blank + 2;
}

/** The end of the logical header that starts at `start`: past its last (folded) line's CRLF. */
function headerStop(buf: Buffer, start: number, end: number): number {
  let at = start;
  for (;;) {
    const nl = buf.indexOf(0x0a, at);
    if (nl < 0 || nl + 1 >= end) return end;
    at = nl + 1;
    const next = buf[at];
    if (next !== 0x20 && next !== 0x09) return at;
  }
}
