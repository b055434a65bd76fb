/**
 * Integrity of the queue store, checked where LMDB itself cannot help.
 *
 * LMDB keeps no checksums and maps the file into memory: a file shorter than its own meta page
 * says (truncated by a full disk, a bad restore, a crash of the file system) makes the first read
 * of a missing page a SIGBUS, and random bytes in a page a SIGSEGV or MDB_CORRUPTED, in every
 * process that opens it — with no word about why. So:
 *
 *   storeFileProblem()  before LMDB opens the file: reads the two meta pages with plain reads and
 *                       compares the file size with the last page the newest meta page claims;
 *                       a shorter file is damaged only if the databases use a page past its end.
 *   contentChecksum()   one CRC-32 per message over its stored bytes (headers and body), written
 *                       with the message in the same transaction and verified before delivery
 *                       (qmgr) and by postcat; a mismatch sends the message to the corrupt queue.
 *
 *   storeTreeProblem()  when nobody writes the store (the master's start): every tree page checked
 *                       (pages.ts reads the file without LMDB).
 */
import { closeSync, fstatSync, openSync } from 'node:fs';
import { crc32 } from 'node:zlib';
import { PageReader, readMetas } from './pages.js';
import { sleepSync } from '../runtime/sleep-sync.js';

export const STORE_FILE = 'queue.lmdb';
/** How long a file without a valid meta page may still be one being created (see storeFileProblem). */
const CREATE_WAIT_MS = 1000;
const CREATE_POLL_MS = 10;
const RECOVER_ADVICE = 'stop the mail system and run "postsuper --recover": it copies every readable message into a new store, sets the rest aside in the corrupt queue, and keeps the damaged file';
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
    // The meta page first, then the size: LMDB writes a transaction's pages before its meta
    // page, so a commit in between (a running server) can only make the file longer.
    let metas = readMetas(fd);
    let size = fstatSync(fd).size;
    // A store being created: another thread or process of this server made the file and is
    // writing its two meta pages (LMDB does so right after creating it, under its lock). Read
    // again for a moment before calling it damaged (a CI run saw this as two actors started).
    for (let waited = 0; metas.length === 0 && size !== 0 && waited < CREATE_WAIT_MS; waited += CREATE_POLL_MS) {
      sleepSync(CREATE_POLL_MS);
      metas = readMetas(fd);
      size = fstatSync(fd).size;
    }
    if (size === 0) return null; // created, never written: LMDB initialises it
    if (metas.length === 0) return `queue store ${file} is damaged: no valid LMDB meta page; ${RECOVER_ADVICE}`;
    const meta = metas[0]!;
    const need = (meta.lastPage + 1) * meta.pageSize;
    if (size >= need) return null;
    // Shorter than the meta page counts. LMDB does not write the pages a transaction took and
    // gave back (its "loose" pages go to the free list unwritten), so a process killed after
    // such a commit leaves a file that ends before its last counted page, and that is no damage:
    // nothing reads those pages before they are written again. Damage is a page the databases
    // use (tree or message content) that the file does not hold: looked for only in this case.
    const reader = new PageReader(fd, size, meta.pageSize);
    for (const root of reader.databases(meta).values()) for (const _ of reader.walk(root, true)) { /* checks each page */ }
    if (reader.damaged.size === 0) return null;
    return `queue store ${file} is damaged: the file has ${size} bytes, its map uses ${need}; ${RECOVER_ADVICE}`;
  } finally {
    closeSync(fd);
  }
}

/**
 * The deep check, for moments when no process writes the store (the master's start, recovery):
 * every branch and leaf page of every database is read and checked (not the message contents on
 * overflow pages: their checksums cover them). Reads about 1 MB per 1,000 queued messages.
 * Null, or what is wrong.
 */
export function storeTreeProblem(file: string): string | null {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch {
    return null;
  }
  try {
    const size = fstatSync(fd).size;
    const meta = readMetas(fd)[0];
    if (!meta || size === 0) return null;
    const reader = new PageReader(fd, size, meta.pageSize);
    for (const root of reader.databases(meta).values()) for (const _ of reader.walk(root, false)) { /* checks each page */ }
    if (reader.damaged.size === 0) return null;
    return `queue store ${file} is damaged: ${reader.damaged.size} unreadable page(s) (first: page ${Math.min(...reader.damaged)}); ${RECOVER_ADVICE}`;
  } finally {
    closeSync(fd);
  }
}

/** The checksum stored with a message: CRC-32 of its content bytes (headers and body). */
export function contentChecksum(content: Uint8Array): number {
  return crc32(content);
}
