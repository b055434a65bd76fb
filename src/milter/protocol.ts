/**
 * The Sendmail milter protocol (version 6) on the wire: packet framing and the command,
 * reply, action and protocol-step codes, as libmilter's mfdef.h and Postfix's milter8.c use
 * them. A packet is a 4-byte big-endian length (command byte + data), the command byte, then
 * the data: NUL-terminated strings, 32-bit network-order integers.
 */

/** MTA → milter commands. */
export const CMD = {
  OPTNEG: 'O', MACRO: 'D', CONNECT: 'C', HELO: 'H', MAIL: 'M', RCPT: 'R', DATA: 'T',
  HEADER: 'L', EOH: 'N', BODY: 'B', EOM: 'E', ABORT: 'A', QUIT: 'Q', UNKNOWN: 'U',
} as const;

/** Milter → MTA replies and modification requests. */
export const REPLY = {
  ACCEPT: 'a', CONTINUE: 'c', REJECT: 'r', TEMPFAIL: 't', DISCARD: 'd', REPLYCODE: 'y',
  PROGRESS: 'p', SKIP: 's', QUARANTINE: 'q', SHUTDOWN: '4', CONN_FAIL: 'f',
  ADDHEADER: 'h', INSHEADER: 'i', CHGHEADER: 'm', CHGFROM: 'e', ADDRCPT: '+', ADDRCPT_PAR: '2',
  DELRCPT: '-', REPLBODY: 'b', OPTNEG: 'O', SETSYMLIST: 'l',
} as const;

/** Actions (SMFIF_*): Postfix offers all nine. */
export const SMFIF = {
  ADDHDRS: 0x01, CHGBODY: 0x02, ADDRCPT: 0x04, DELRCPT: 0x08, CHGHDRS: 0x10, QUARANTINE: 0x20,
  CHGFROM: 0x40, ADDRCPT_PAR: 0x80, SETSYMLIST: 0x100,
} as const;
export const MY_ACTIONS = 0x1ff;

/** Protocol steps (SMFIP_*): NO* = do not send that event, NR_* = send it, expect no reply. */
export const SMFIP = {
  NOCONNECT: 1 << 0, NOHELO: 1 << 1, NOMAIL: 1 << 2, NORCPT: 1 << 3, NOBODY: 1 << 4, NOHDRS: 1 << 5,
  NOEOH: 1 << 6, NR_HDR: 1 << 7, NOUNKNOWN: 1 << 8, NODATA: 1 << 9, SKIP: 1 << 10, RCPT_REJ: 1 << 11,
  NR_CONN: 1 << 12, NR_HELO: 1 << 13, NR_MAIL: 1 << 14, NR_RCPT: 1 << 15, NR_DATA: 1 << 16,
  NR_UNKN: 1 << 17, NR_EOH: 1 << 18, NR_BODY: 1 << 19, HDR_LEADSPC: 1 << 20,
} as const;

const V2 = SMFIP.NOCONNECT | SMFIP.NOHELO | SMFIP.NOMAIL | SMFIP.NORCPT | SMFIP.NOBODY | SMFIP.NOHDRS | SMFIP.NOEOH;
const V3 = V2 | SMFIP.NOUNKNOWN;
const V4 = V3 | SMFIP.NODATA;
const NOREPLY = SMFIP.NR_CONN | SMFIP.NR_HELO | SMFIP.NR_MAIL | SMFIP.NR_RCPT | SMFIP.NR_DATA | SMFIP.NR_UNKN
  | SMFIP.NR_HDR | SMFIP.NR_EOH | SMFIP.NR_BODY;
const V6 = V4 | SMFIP.SKIP | SMFIP.RCPT_REJ | NOREPLY | SMFIP.HDR_LEADSPC;

/**
 * milter_protocol ("6", "4 no_header_reply", …) → the version and the protocol-step mask
 * Postfix announces; null when a word is unknown or two versions are given.
 */
export function protocolOf(setting: string): { version: number; events: number } | null {
  let version = 0;
  let events = 0;
  for (const word of setting.split(/[\s,]+/).filter(Boolean)) {
    const masks: Record<string, number> = { 6: V6, 4: V4, 3: V3, 2: V2, no_header_reply: SMFIP.NR_HDR };
    if (!Object.hasOwn(masks, word)) return null;
    if (word !== 'no_header_reply') {
      if (version !== 0) return null;
      version = Number(word);
    }
    events |= masks[word]!;
  }
  return version === 0 || events === 0 ? null : { version, events };
}

/** Body chunk size limit (MILTER_CHUNK_SIZE). */
export const CHUNK = 65535;
/** The largest reply packet accepted (Postfix: MILTER8_DATA_LIMIT-ish; generous for REPLBODY chunks). */
export const MAX_PACKET = 1 << 24;

/** One packet: the command byte and its data items (strings get their NUL, numbers are u32). */
export function packet(cmd: string, ...items: (string | number | Buffer)[]): Buffer {
  // One allocation per packet: sizes first, then each item written in place.
  let size = 5;
  for (const it of items) size += typeof it === 'number' ? 4 : typeof it === 'string' ? Buffer.byteLength(it, 'latin1') + 1 : it.length;
  const out = Buffer.allocUnsafe(size);
  out.writeUInt32BE(size - 4, 0);
  out.write(cmd, 4, 'latin1');
  let pos = 5;
  for (const it of items) {
    if (typeof it === 'number') pos = out.writeUInt32BE(it >>> 0, pos);
    else if (typeof it === 'string') {
      pos += out.write(it, pos, 'latin1');
      out[pos++] = 0;
    } else pos += it.copy(out, pos);
  }
  return out;
}

/** Reads a packet's data: NUL-terminated strings and u32s, in order. */
export class PacketReader {
  private pos = 0;
  constructor(readonly data: Buffer) {}
  get left(): number { return this.data.length - this.pos; }
  u32(): number {
    if (this.left < 4) throw new Error('input packet too short for network long');
    const v = this.data.readUInt32BE(this.pos);
    this.pos += 4;
    return v;
  }
  str(): string {
    const end = this.data.indexOf(0, this.pos);
    if (end < 0) throw new Error('missing string null terminator');
    const s = this.data.toString('latin1', this.pos, end);
    this.pos = end + 1;
    return s;
  }
  rest(): Buffer {
    const b = this.data.subarray(this.pos);
    this.pos = this.data.length;
    return b;
  }
}
