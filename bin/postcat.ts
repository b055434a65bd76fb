/**
 * postcat — Postfix's postcat(1):
 *   postcat [-bdehoqrv] [-c config_dir] [-s offset] [files...]
 *   postcat [-bdehoqrv] [-c config_dir] -q queue_id...
 * Files are Postfix queue files (Postfix's record format, src/queue/record.ts); with none,
 * standard input is read. The output is Postfix 3.7's, byte for byte (src/queue/postcat.ts),
 * errors included: a pipe cannot seek, so pointer records and the end of a piped queue file
 * fail as in Postfix ("seek error after reading END record: Illegal seek").
 *
 * -q: a message of Postactor's store, written out as the queue file cleanup would have written
 * (src/queue/queue-file.ts) and shown the same way; the path shown is "queue/ID". A file of
 * Postactor's maildrop (sendmail's submissions, its own format) is shown as the maildrop queue
 * file Postfix's postdrop would have written. Postactor has no other export of a message.
 *
 * One deliberate difference: a file that is not a queue file gets Postfix's warning ("input is
 * not a valid queue file"), and postcat then exits 1 where Postfix exits 0, so that a script
 * notices.
 */
import { closeSync, existsSync, fstatSync, openSync, readFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { describeErrno } from '../src/maps/texthash.js';
import { fatal, parseCommandLine, usageError } from '../src/queue/command-line.js';
import { NotAQueueFile, postcat, PostcatFatal, PostcatOutput, type PostcatFlags } from '../src/queue/postcat.js';
import { isQueueId } from '../src/queue/qid.js';
import { decodeMaildrop, MAILDROP_MAGIC, MaildropFormatError } from '../src/maildrop/format.js';
import { maildropQueueFileOf, queueFileOf } from '../src/queue/queue-file.js';
import { RecordReader } from '../src/queue/record.js';

const PROG = 'postcat';
const USAGE = 'usage: postcat [-b (body text)] [-c config_dir] [-d (decimal record type)] [-e (envelope records)] [-h (header text)] [-q (access queue)] [-v] [file(s)...]';

/** Output with write(2): a reader that went away (postcat | head) ends postcat, as SIGPIPE ends Postfix's. */
const out = new PostcatOutput((bytes) => {
  let off = 0;
  try {
    while (off < bytes.length) off += writeSync(1, bytes, off);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EPIPE') process.exit(1);
    if (code !== 'EAGAIN') throw err;
    process.stdout.write(bytes.subarray(off)); // a non-blocking pipe: Node's stream waits for it
  }
});
const warn = (text: string) => process.stderr.write(`${PROG}: warning: ${text}\n`);

/** One input through the renderer; false when it was no queue file. */
function show(reader: RecordReader, f: PostcatFlags): boolean {
  try {
    postcat(reader, f, out, warn);
    return true;
  } catch (err) {
    if (err instanceof NotAQueueFile) return false;
    if (err instanceof PostcatFatal) fatal(PROG, err.message);
    throw err;
  }
}

/** A file's bytes, or Postfix's fatal "open FILE: reason"; a directory reads as empty and warns at close. */
function readInput(path: string): { data: Buffer; seekable: boolean; closeError?: string } {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    fatal(PROG, `open ${path}: ${describeErrno(err)}`);
  }
  try {
    const st = fstatSync(fd);
    if (st.isDirectory()) return { data: Buffer.alloc(0), seekable: true, closeError: 'Is a directory' };
    return { data: readFileSync(fd), seekable: st.isFile() };
  } finally {
    closeSync(fd);
  }
}

async function main(): Promise<void> {
  const parsed = parseCommandLine(PROG, USAGE, 'bc:dehoqrs:v');
  if (!parsed) return;
  const f: PostcatFlags = { env: false, header: false, body: false, dec: false, offset: false, raw: false, verbose: false, start: 0 };
  let dir: string | undefined;
  let queue = false;
  for (const [c, v] of parsed.opts) {
    if (c === 'c') dir = v;
    else if (c === 'b') f.body = true;
    else if (c === 'h') f.header = true;
    else if (c === 'e') f.env = true;
    else if (c === 'd') f.dec = true;
    else if (c === 'o') f.offset = true;
    else if (c === 'q') queue = true;
    else if (c === 'r') f.raw = true;
    else if (c === 'v') f.verbose = true;
    else if (c === 's') {
      if (!/^\d+$/.test(v!)) fatal(PROG, `bad offset: ${v}`);
      f.start = Number(v);
    }
  }
  if (!f.env && !f.header && !f.body) f.env = f.header = f.body = true;
  const files = parsed.positionals;
  let invalid = false;

  if (files.length === 0) {
    // Standard input: a redirected file can seek, a pipe cannot.
    let seekable = false;
    try {
      seekable = fstatSync(0).isFile();
    } catch { /* closed: reads as empty */ }
    let data: Buffer;
    try {
      data = readFileSync(0);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EAGAIN') usageError(PROG, USAGE, 'standard input is non-blocking: give file names');
      data = Buffer.alloc(0);
    }
    invalid = !show(new RecordReader(data, 'stdin', seekable, warn, true), f);
  } else if (queue) {
    // The configuration and the store (LMDB) only for -q: reading files needs neither.
    const { commandConfig } = await import('../src/queue/admin.js');
    const { queueDirectory } = await import('../src/config/index.js');
    const { QueueStore } = await import('../src/queue/store.js');
    const { contentChecksum } = await import('../src/queue/integrity.js');
    const config = commandConfig(PROG, dir);
    const queueDir = queueDirectory(config);
    const store = existsSync(join(queueDir, 'queue.lmdb')) ? QueueStore.open(queueDir, { readOnly: true }) : null;
    const json = parsed.long.has('json');
    for (const id of files) {
      if (!isQueueId(id)) fatal(PROG, `bad mail queue ID: ${id}`);
      const meta = store?.get(id);
      if (!meta) fatal(PROG, `open queue file ${id}: No such file or directory`);
      const content = store!.content(id) ?? Buffer.alloc(0);
      // The checksum stored with the message (src/queue/integrity.ts): damaged content is shown,
      // since that is what an operator looking into the corrupt queue wants, but said so.
      if (meta.checksum !== undefined && contentChecksum(content) !== meta.checksum) {
        warn(`${id}: message content does not match its checksum: the stored message is damaged`);
        process.exitCode = 1;
      }
      if (json) process.stdout.write(JSON.stringify({ ...meta, content: content.toString('latin1') }) + '\n');
      else show(new RecordReader(queueFileOf(meta, content), `${meta.queue}/${id}`, true, warn), f);
    }
    void store?.close();
  } else {
    for (const path of files) {
      const input = readInput(path);
      if (input.data.subarray(0, MAILDROP_MAGIC.length + 1).toString('latin1') === `${MAILDROP_MAGIC}\n`) {
        // A file of Postactor's maildrop: shown as the queue file Postfix's postdrop would have written.
        try {
          const { envelope, message } = decodeMaildrop(input.data);
          show(new RecordReader(maildropQueueFileOf(envelope, message), path, true, warn), f);
        } catch (err) {
          if (!(err instanceof MaildropFormatError)) throw err;
          warn(`${path}: malformed maildrop file: ${err.message}`);
          invalid = true;
        }
        continue;
      }
      if (!show(new RecordReader(input.data, path, input.seekable, warn), f)) invalid = true;
      if (input.closeError) warn(`close ${path}: ${input.closeError}`);
    }
  }
  if (invalid) process.exitCode = 1;
}

main().catch((err: unknown) => fatal(PROG, (err as Error).message));
