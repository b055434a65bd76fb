/**
 * Integrity of the queue store, checked where LMDB itself cannot help.
 *
 * LMDB keeps no checksums and maps the file into memory: a file shorter than its own meta page
 * says (truncated by a full disk, a bad restore, a crash of the file system) makes the first read
 * of a missing page a SIGBUS, and random bytes in a page a SIGSEGV or MDB_CORRUPTED, in every
 * process that opens it — with no word about why. So:
 *
 *   storeFileProblem()  before LMDB opens the file: reads the two meta pages with plain reads and
 *                       compares the file size with the last page the newest meta page claims.
 *   contentChecksum()   one CRC-32 per message over its stored bytes (headers and body), written
 *                       with the message in the same transaction and verified before delivery
 *                       (qmgr) and by postcat; a mismatch sends the message to the corrupt queue.
 *
 * The page layout read here is lmdb-js's LMDB (mdb.master3): a 24-byte page header (page number,
 * txnid, pad, flags, lower, upper), then the meta record — magic 0xBEEFC0DE, version, address,
 * map size, the free and main databases (48 bytes each, the free one's md_pad holding the page
 * size), the last page number and the txnid.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { crc32 } from 'node:zlib';

export const STORE_FILE = 'queue.lmdb';
const MAGIC = 0xbeefc0de;
export const PAGE_HEADER = 24;

/** One of the two meta pages, as far as it could be read. */
export interface MetaPage {
  pageSize: number;
  lastPage: number;
  txnid: bigint;
  /** Root page numbers of the free and the main database (-1: empty). */
  mainRoot: number;
}

/** The meta record at `offset` of `buf`, or null when it is not one (bad magic, no page size). */
export function readMeta(buf: Buffer, offset: number): MetaPage | null {
  const m = offset + PAGE_HEADER;
  if (buf.length < m + 0x88 || buf.readUInt32LE(m) !== MAGIC) return null;
  const pageSize = buf.readUInt32LE(m + 0x18); // free database's md_pad
  if (pageSize < 512 || pageSize > 65536 || (pageSize & (pageSize - 1)) !== 0) return null;
  const root = buf.readBigUInt64LE(m + 0x48 + 0x28); // main database's md_root
  return {
    pageSize,
    mainRoot: root === 0xffffffffffffffffn ? -1 : Number(root),
    lastPage: Number(buf.readBigUInt64LE(m + 0x78)),
    txnid: buf.readBigUInt64LE(m + 0x80),
  };
}

/** The newest valid meta page of an open file (and the older one, a fallback for recovery). */
export function readMetas(fd: number): MetaPage[] {
  const head = Buffer.alloc(2 * 65536);
  const n = readSync(fd, head, 0, head.length, 0);
  const first = readMeta(head.subarray(0, n), 0);
  const size = first?.pageSize ?? 4096;
  const second = readMeta(head.subarray(0, n), size);
  return [first, second].filter((m): m is MetaPage => m !== null).sort((a, b) => (a.txnid > b.txnid ? -1 : 1));
}

/**
 * Why the store file cannot be opened safely, or null: its meta pages are unreadable, or it is
 * shorter than the pages its newest meta page uses. A file that does not exist is no problem
 * (LMDB creates it).
 */
export function storeFileProblem(file: string): string | null {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return code === 'ENOENT' ? null : `${file}: ${code ?? (err as Error).message}`;
  }
  try {
    const size = fstatSync(fd).size;
    if (size === 0) return null; // created, never written: LMDB initialises it
    const metas = readMetas(fd);
    const what = 'stop the mail system, keep a copy of the file, and run "postsuper --recover": it copies every readable message into a new store and sets the rest aside';
    if (metas.length === 0) return `queue store ${file} is damaged: no valid LMDB meta page; ${what}`;
    const need = (metas[0]!.lastPage + 1) * metas[0]!.pageSize;
    if (size < need) return `queue store ${file} is damaged: the file has ${size} bytes, its map uses ${need}; ${what}`;
    return null;
  } finally {
    closeSync(fd);
  }
}

/** The checksum stored with a message: CRC-32 of its content bytes (headers and body). */
export function contentChecksum(content: Uint8Array): number {
  return crc32(content);
}
