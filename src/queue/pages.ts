/**
 * A bounds-checked reader of the queue store's LMDB file, for the checks and the recovery that
 * LMDB cannot do itself: LMDB maps the file and trusts every page, so a missing page is a SIGBUS
 * and a garbled one a SIGSEGV. Here every page is read with plain reads and checked (its page
 * number, its kind, every node inside it) before it is used; a bad page is counted and skipped,
 * with the subtree below it.
 *
 * Layout (lmdb-js's LMDB, mdb.master3, 64-bit): a page starts with a 24-byte header — page
 * number, txnid, pad, flags (1 branch, 2 leaf, 4 overflow, 8 meta), lower, upper; `lower / 2`
 * node pointers follow, each an offset from the end of the header. A node is lo, hi, flags, key
 * size (2 bytes each), the key, then the data: a branch node's child page number is lo | hi << 16
 * | flags << 32; a leaf node's data is lo | hi << 16 bytes, in place or (flag 1, "big data") on
 * overflow pages whose 8-byte page number is the node's data. The main database maps each named
 * database (flag 2) to its 48-byte record, whose root page number is at offset 40. Pages 0 and 1
 * are meta pages: after the header, magic 0xBEEFC0DE, version, address, map size, the free and
 * main databases (48 bytes each, the free one's md_pad holding the page size), the last page
 * number and the txnid; the one with the higher txnid is current.
 */
import { readSync } from 'node:fs';

export const PAGE_HEADER = 24;
const MAGIC = 0xbeefc0de;

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

const P_BRANCH = 0x01;
const P_LEAF = 0x02;
const P_OVERFLOW = 0x04;
const F_BIGDATA = 0x01;
const NODE_HEADER = 8;
/** LMDB's B-trees are shallow; deeper means a loop in damaged pages. */
const MAX_DEPTH = 32;

/** One leaf entry; `value` is null when its overflow pages are unreadable. */
export interface Entry {
  key: Buffer;
  value: Buffer | null;
}

export class PageReader {
  /** Tree and overflow pages found damaged or missing. */
  readonly damaged = new Set<number>();
  private readonly pages: number;

  constructor(private readonly fd: number, readonly size: number, readonly pageSize: number) {
    this.pages = Math.floor(size / pageSize);
  }

  /** A branch or leaf page, checked through; null (and counted) when it is not one. */
  treePage(pgno: number): Buffer | null {
    const p = this.read(pgno, this.pageSize);
    if (p && (p.readUInt16LE(18) & (P_BRANCH | P_LEAF)) !== 0 && this.nodesFit(p)) return p;
    this.damaged.add(pgno);
    return null;
  }

  /** The `size` value bytes stored on the overflow pages starting at `pgno`, or null. */
  overflow(pgno: number, size: number): Buffer | null {
    const value = this.overflowQuiet(pgno, size);
    if (!value) this.damaged.add(pgno);
    return value;
  }

  /**
   * Every entry of the B-tree under `root`, in key order, skipping damaged subtrees. With
   * `values: false` overflow pages are not read (the start-up check walks only tree pages).
   */
  *walk(root: number, values = true, depth = 0, seen = new Set<number>()): Generator<Entry> {
    if (root < 0 || depth > MAX_DEPTH || seen.has(root)) return;
    seen.add(root);
    const p = this.treePage(root);
    if (!p) return;
    const leaf = (p.readUInt16LE(18) & P_LEAF) !== 0;
    for (const n of nodes(p)) {
      if (!leaf) {
        const child = n.lo + n.hi * 0x10000 + n.flags * 0x100000000;
        yield* this.walk(child, values, depth + 1, seen);
        continue;
      }
      const key = p.subarray(n.at + NODE_HEADER, n.at + NODE_HEADER + n.ksize);
      const dataAt = n.at + NODE_HEADER + n.ksize;
      const size = n.lo + n.hi * 0x10000;
      if ((n.flags & F_BIGDATA) === 0) {
        yield { key, value: p.subarray(dataAt, dataAt + size) };
      } else {
        const pgno = Number(p.readBigUInt64LE(dataAt));
        yield { key, value: values ? this.overflow(pgno, size) : Buffer.alloc(0) };
      }
    }
  }

  /**
   * The entries of page `pgno` if it is a sound leaf page, with the txnid that wrote it; null
   * otherwise (not counted as damage: used to scan every page of a file whose tree is broken).
   */
  leafAt(pgno: number): { txnid: bigint; entries: Entry[] } | null {
    const p = this.read(pgno, this.pageSize);
    if (!p || (p.readUInt16LE(18) & (P_LEAF | P_BRANCH | P_OVERFLOW)) !== P_LEAF || !this.nodesFit(p)) return null;
    const entries: Entry[] = [];
    for (const n of nodes(p)) {
      const key = p.subarray(n.at + NODE_HEADER, n.at + NODE_HEADER + n.ksize);
      const dataAt = n.at + NODE_HEADER + n.ksize;
      const size = n.lo + n.hi * 0x10000;
      if ((n.flags & F_BIGDATA) === 0) entries.push({ key, value: p.subarray(dataAt, dataAt + size) });
      else entries.push({ key, value: this.overflowQuiet(Number(p.readBigUInt64LE(dataAt)), size) });
    }
    return { txnid: p.readBigUInt64LE(8), entries };
  }

  /** Page numbers a scan visits: every page after the two meta pages that the file holds. */
  get pageCount(): number {
    return this.pages;
  }

  /** Every overflow run in the file (a value's pages: page number and the bytes after the header). */
  *overflowRuns(): Generator<{ pgno: number; data: Buffer }> {
    const head = Buffer.alloc(PAGE_HEADER);
    for (let pgno = 2; pgno < this.pages;) {
      if (readSync(this.fd, head, 0, PAGE_HEADER, pgno * this.pageSize) < PAGE_HEADER) return;
      const count = head.readUInt32LE(20);
      if (Number(head.readBigUInt64LE(0)) !== pgno || (head.readUInt16LE(18) & P_OVERFLOW) === 0 || count < 1) {
        pgno++;
        continue;
      }
      const run = Math.min(count, this.pages - pgno);
      const buf = Buffer.alloc(run * this.pageSize);
      readSync(this.fd, buf, 0, buf.length, pgno * this.pageSize);
      yield { pgno, data: buf.subarray(PAGE_HEADER) };
      pgno += run;
    }
  }

  private overflowQuiet(pgno: number, size: number): Buffer | null {
    const p = this.read(pgno, PAGE_HEADER + size);
    if (!p || (p.readUInt16LE(18) & P_OVERFLOW) === 0 || p.readUInt32LE(20) * this.pageSize < PAGE_HEADER + size) return null;
    return p.subarray(PAGE_HEADER);
  }

  /** The named databases of the main database: name → root page (-1 when empty). */
  databases(meta: MetaPage): Map<string, number> {
    const out = new Map<string, number>();
    for (const { key, value } of this.walk(meta.mainRoot)) {
      if (!value || value.length < 48) continue;
      const root = value.readBigUInt64LE(40);
      out.set(key.toString('latin1').replace(/\0$/, ''), root === 0xffffffffffffffffn ? -1 : Number(root));
    }
    return out;
  }

  private read(pgno: number, length: number): Buffer | null {
    if (!Number.isSafeInteger(pgno) || pgno < 2 || pgno >= this.pages) return null;
    const buf = Buffer.alloc(length);
    const n = readSync(this.fd, buf, 0, length, pgno * this.pageSize);
    if (n < length || Number(buf.readBigUInt64LE(0)) !== pgno) return null;
    return buf;
  }

  /** Node pointers, keys and in-page data all inside the page. */
  private nodesFit(p: Buffer): boolean {
    const lower = p.readUInt16LE(20);
    const upper = p.readUInt16LE(22);
    if (lower > upper || PAGE_HEADER + upper > this.pageSize) return false;
    const leaf = (p.readUInt16LE(18) & P_LEAF) !== 0;
    for (const n of nodes(p)) {
      let end = n.at + NODE_HEADER + n.ksize;
      if (leaf) end += (n.flags & F_BIGDATA) !== 0 ? 8 : n.lo + n.hi * 0x10000;
      if (n.at < PAGE_HEADER + upper || end > this.pageSize) return false;
      if (!leaf && n.lo + n.hi * 0x10000 + n.flags * 0x100000000 >= this.pages) return false;
    }
    return true;
  }
}

interface NodeHeader {
  at: number;
  lo: number;
  hi: number;
  flags: number;
  ksize: number;
}

function* nodes(p: Buffer): Generator<NodeHeader> {
  const count = p.readUInt16LE(20) >> 1;
  for (let i = 0; i < count; i++) {
    const at = PAGE_HEADER + p.readUInt16LE(PAGE_HEADER + 2 * i);
    if (at + NODE_HEADER > p.length) return;
    yield { at, lo: p.readUInt16LE(at), hi: p.readUInt16LE(at + 2), flags: p.readUInt16LE(at + 4), ksize: p.readUInt16LE(at + 6) };
  }
}
