/**
 * Bounded memory per session: the message content of one DATA transaction as it arrives. The
 * first SPOOL_MEMORY bytes stay in memory (most mail is smaller); beyond that everything goes to
 * a file in $queue_directory/smtpd, as Postfix's smtpd writes content to its queue file while it
 * reads it. The file is unlinked as soon as it is open, so nothing is left behind after a crash,
 * and its descriptor is closed when the transaction ends (sessions.ts counts one descriptor per
 * session for it). A client that sends 10 MB slowly therefore costs disk, not memory; the whole
 * message is read back only when it is complete, to go to cleanup.
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
  private readonly chunks: Buffer[] = [];
  private file: FileHandle | null = null;
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
    if (this.file === null && this.kept + chunk.length <= SPOOL_MEMORY) {
      // Copied: the parser's buffer may be a slice of a larger socket read.
      this.chunks.push(Buffer.from(chunk));
      this.kept += chunk.length;
      return cb();
    }
    // A write cut short by release() (the client went away) is no error.
    this.toFile(chunk).then(() => cb(), (err: Error) => cb(this.released ? null : err));
  }

  private async toFile(chunk: Buffer): Promise<void> {
    let file = this.file;
    if (file === null) {
      mkdirSync(this.dir, { recursive: true, mode: 0o700 });
      const name = join(this.dir, `${process.pid}.${randomBytes(8).toString('hex')}`);
      file = await open(name, 'w+', 0o600);
      await unlink(name);
      // Released while the file was being opened: nothing more to keep.
      if (this.released) return void (await file.close().catch(() => undefined));
      this.file = file;
      const head = Buffer.concat(this.chunks);
      this.chunks.length = 0;
      await writeAll(file, head, 0);
    }
    await writeAll(file, chunk, this.kept);
    this.kept += chunk.length;
  }

  /**
   * The kept content after `head`, in one owned buffer (so it can be transferred to cleanup
   * instead of copied).
   */
  async content(head: Uint8Array = new Uint8Array(0)): Promise<Uint8Array> {
    const out = new Uint8Array(head.length + this.kept);
    out.set(head, 0);
    if (this.file === null) {
      let at = head.length;
      for (const c of this.chunks) {
        out.set(c, at);
        at += c.length;
      }
      return out;
    }
    let done = 0;
    while (done < this.kept) {
      const { bytesRead } = await this.file.read(out, head.length + done, this.kept - done, done);
      if (bytesRead === 0) throw new Error('spool file shorter than written');
      done += bytesRead;
    }
    return out;
  }

  /** Replaces the content (a milter edited the message). */
  replace(content: Uint8Array): void {
    const f = this.file;
    this.file = null;
    void f?.close().catch(() => undefined);
    this.chunks.length = 0;
    this.chunks.push(Buffer.from(content.buffer, content.byteOffset, content.length));
    this.kept = content.length;
  }

  /** Closes the spool file (the transaction is over). */
  async release(): Promise<void> {
    this.released = true;
    const f = this.file;
    this.file = null;
    await f?.close().catch(() => undefined);
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
