/**
 * Bounded memory per session: the message content of one DATA transaction as it arrives. Up to
 * SPOOL_MEMORY bytes stay in memory (most mail is smaller); when more arrive, what memory holds
 * goes to a file in $queue_directory/smtpd in one write, as Postfix's smtpd writes content to its
 * queue file while it reads it. The file is unlinked as soon as it is open, so nothing is left
 * behind after a crash; when the transaction ends it waits, open, for the thread's next large
 * message (at most SPARE_FILES per thread; sessions.ts counts one descriptor per session for it).
 * A client that sends 10 MB slowly therefore costs disk, not memory; the whole message is read
 * back only when it is complete (the file's part, then memory's), to go to cleanup.
 *
 * Node reads each socket chunk into a fresh buffer outside V8's heap, and V8 frees those only
 * at a garbage collection, which it starts for such memory only after tens of megabytes per
 * thread: 30 fast clients would leave well over 100 MB of read buffers waiting. Each smtpd thread
 * therefore asks for a minor (young generation) collection after every GC_EVERY bytes of content
 * it received, which frees them (a scavenge costs well under a millisecond).
 *
 * Bytes beyond message_size_limit are counted and dropped (the client gets 552 at the end).
 * The writable side applies backpressure: smtp-server stops reading the socket while a file
 * write is pending.
 */
import { mkdirSync } from 'node:fs';
import { open, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/** Content kept in memory before the spool file is opened. */
export const SPOOL_MEMORY = 64 * 1024;

/** Content bytes between two young-generation collections (see the file header). */
const GC_EVERY = 2 * 1024 * 1024;

type Gc = (opts: { type: 'minor'; execution: 'async' }) => void;
let collect: Gc | null | undefined;
let sinceGc = 0;

/** Counts received content; a minor collection every GC_EVERY bytes. */
function received(bytes: number): void {
  sinceGc += bytes;
  if (sinceGc < GC_EVERY) return;
  sinceGc = 0;
  if (collect === undefined) {
    try {
      setFlagsFromString('--expose-gc');
      collect = runInNewContext('gc') as Gc;
    } catch {
      collect = null;
    }
  }
  collect?.({ type: 'minor', execution: 'async' });
}

export class Spool extends Writable {
  /** Bytes received (also those beyond the size limit). */
  total = 0;
  /** Bytes kept (in memory or in the file). */
  kept = 0;
  /** Kept content not in the file: at most SPOOL_MEMORY bytes, after the file's `inFile`. */
  private readonly chunks: Buffer[] = [];
  private inMemory = 0;
  /** Bytes in the spool file (its first `inFile` bytes are the content's). */
  private inFile = 0;
  private file: FileHandle | null = null;
  /** The file operation under way (a file goes back to the pool only when none is). */
  private busy: Promise<unknown> = Promise.resolve();
  /** The transaction is over (or the client gone): later bytes are dropped, no file is opened. */
  private released = false;

  constructor(private readonly dir: string, private readonly sizeLimit: number) {
    super({ highWaterMark: SPOOL_MEMORY });
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.total += chunk.length;
    received(chunk.length);
    if (this.released) return cb();
    if (this.sizeLimit > 0 && this.kept + chunk.length > this.sizeLimit) {
      // Keep whatever still fits, so the size check at the end sees the overrun only.
      chunk = chunk.subarray(0, Math.max(0, this.sizeLimit - this.kept));
      if (chunk.length === 0) return cb();
    }
    this.kept += chunk.length;
    if (this.inMemory + chunk.length <= SPOOL_MEMORY) {
      // Copied: the parser's buffer may be a slice of a larger socket read.
      this.chunks.push(Buffer.from(chunk));
      this.inMemory += chunk.length;
      return cb();
    }
    // Memory is full: what it holds and this chunk go to the file in one write.
    const block = [...this.chunks, chunk];
    const size = this.inMemory + chunk.length;
    this.chunks.length = 0;
    this.inMemory = 0;
    const at = this.inFile;
    this.inFile += size;
    // A write cut short by release() (the client went away) is no error.
    const write = this.toFile(block, size, at);
    this.busy = write.catch(() => undefined);
    write.then(() => cb(), (err: Error) => cb(this.released ? null : err));
  }

  private async toFile(block: Buffer[], size: number, at: number): Promise<void> {
    let file = this.file;
    if (file === null) {
      file = spareFile(this.dir) ?? await newFile(this.dir);
      // Released while the file was being opened: nothing more to keep.
      if (this.released) return void giveBack(this.dir, file, 0);
      this.file = file;
    }
    // One writev; the rest of a partial one in plain writes.
    const { bytesWritten } = await file.writev(block, at);
    if (bytesWritten < size) await writeAll(file, Buffer.concat(block, size).subarray(bytesWritten), at + bytesWritten);
  }

  /**
   * The kept content after `head`, in one owned buffer (so it can be transferred to cleanup
   * instead of copied).
   */
  async content(head: Uint8Array = new Uint8Array(0)): Promise<Uint8Array> {
    const out = new Uint8Array(head.length + this.kept);
    out.set(head, 0);
    let at = head.length;
    if (this.inFile > 0) {
      await this.busy;
      const file = this.file;
      if (file === null) throw new Error('spool file closed');
      const read = readAll(file, out, at, this.inFile);
      this.busy = read.catch(() => undefined);
      await read;
      at += this.inFile;
    }
    for (const c of this.chunks) {
      out.set(c, at);
      at += c.length;
    }
    return out;
  }

  /** Replaces the content (a milter edited the message). */
  replace(content: Uint8Array): void {
    void this.dropFile();
    this.chunks.length = 0;
    this.chunks.push(Buffer.from(content.buffer, content.byteOffset, content.length));
    this.inMemory = this.kept = content.length;
  }

  /** Gives the spool file back (the transaction is over). */
  async release(): Promise<void> {
    this.released = true;
    await this.dropFile();
  }

  /** The file goes back to the pool once no operation on it is under way. */
  private async dropFile(): Promise<void> {
    const f = this.file;
    const used = this.inFile;
    this.file = null;
    this.inFile = 0;
    if (f === null) return;
    await this.busy;
    await giveBack(this.dir, f, used);
  }
}

/**
 * Spool files are reused: open (and unlinked) files wait for the thread's next large messages,
 * so a message over SPOOL_MEMORY costs no open, unlink and close. A thread serves many sessions
 * at once and each large message in progress needs its own file, hence up to SPARE_FILES of
 * them; a file that held more than SPARE_KEEP bytes is emptied first, so the spares hold at
 * most SPARE_FILES × SPARE_KEEP of disk per thread.
 */
const SPARE_FILES = 16;
const SPARE_KEEP = 256 * 1024;
const spares = new Map<string, FileHandle[]>();

function spareFile(dir: string): FileHandle | undefined {
  return spares.get(dir)?.pop();
}

/** A new spool file, unlinked as soon as it is open. */
async function newFile(dir: string): Promise<FileHandle> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const name = join(dir, `${process.pid}.${randomBytes(8).toString('hex')}`);
  const file = await open(name, 'w+', 0o600);
  await unlink(name);
  return file;
}

async function giveBack(dir: string, file: FileHandle, used: number): Promise<void> {
  let list = spares.get(dir);
  if (list === undefined) spares.set(dir, list = []);
  try {
    if (list.length >= SPARE_FILES) return void (await file.close());
    if (used > SPARE_KEEP) await file.truncate(0);
    list.push(file);
  } catch {
    await file.close().catch(() => undefined);
  }
}

/** Reads `length` bytes from the start of `file` into out[at..]. */
async function readAll(file: FileHandle, out: Uint8Array, at: number, length: number): Promise<void> {
  let done = 0;
  while (done < length) {
    const { bytesRead } = await file.read(out, at + done, length - done, done);
    if (bytesRead === 0) throw new Error('spool file shorter than written');
    done += bytesRead;
  }
}

/** Writes all of `buf` at `position` (a write may be partial). */
async function writeAll(file: FileHandle, buf: Buffer, position: number): Promise<void> {
  let done = 0;
  while (done < buf.length) {
    const { bytesWritten } = await file.write(buf, done, buf.length - done, position + done);
    done += bytesWritten;
  }
}
