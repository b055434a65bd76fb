/**
 * mailCopy (src/delivery/copy.ts), the copy local(8), virtual(8) and pipe(8) write: the one-buffer
 * version against the straightforward one (a Buffer per line, kept here as the reference) on
 * messages with CRLF and LF lines, a last line without its newline, empty lines, lines that
 * start with "." or "From ", and every flag and line ending the agents use.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mailCopy, type CopyOptions } from '../src/delivery/copy.js';

/** The line-by-line copy that mailCopy replaced (its envelope lines are checked separately). */
function reference(content: Uint8Array, o: CopyOptions): Buffer {
  const src = Buffer.from(content);
  const eol = Buffer.from(o.eol, 'latin1');
  const parts: Buffer[] = [];
  let pos = 0;
  while (pos < src.length) {
    let nl = src.indexOf(10, pos);
    const end = nl < 0 ? src.length : nl;
    const lineEnd = end > pos && src[end - 1] === 13 ? end - 1 : end;
    if (o.flags.has('.') && src[pos] === 0x2e) parts.push(Buffer.from('.'));
    if (o.flags.has('>') && src.subarray(pos, pos + 5).toString('latin1') === 'From ') parts.push(Buffer.from('>'));
    parts.push(src.subarray(pos, lineEnd), eol);
    if (nl < 0) nl = src.length;
    pos = nl + 1;
  }
  if (o.flags.has('B')) parts.push(eol);
  return Buffer.concat(parts);
}

const LINES = ['Subject: x', '', '.', '..dots', 'From me', 'From', 'From\r', 'Fro', ' From x', '>From y', 'body line', 'ä ü utf-8', '\r'];

test('mailCopy: the same bytes as the line-by-line copy, for every flag set and line ending', () => {
  let seed = 7;
  const rnd = (n: number) => { seed = (seed * 1103515245 + 12345) % 2 ** 31; return seed % n; };
  const now = new Date(2026, 11, 3, 4, 5, 6);
  for (let round = 0; round < 300; round++) {
    const n = rnd(12);
    let text = '';
    for (let i = 0; i < n; i++) text += LINES[rnd(LINES.length)]! + (rnd(3) === 0 ? '\n' : '\r\n');
    if (rnd(4) === 0) text += LINES[rnd(LINES.length)]!; // no newline at the end
    const content = new Uint8Array(Buffer.from(text, 'utf8'));
    for (const flags of [[], ['.'], ['>'], ['B'], ['.', 'B'], ['>', 'B']]) {
      for (const eol of ['\n', '\r\n']) {
        const o: CopyOptions = { flags: new Set(flags), eol, sender: 's@x', originalRecipient: 'r@x', deliveredTo: 'r@x', now };
        assert.deepEqual(mailCopy(content, o), reference(content, o), JSON.stringify({ text, flags, eol }));
      }
    }
  }
});

test('mailCopy: envelope lines first, From_ line, Return-Path, X-Original-To, Delivered-To', () => {
  const now = new Date(2026, 11, 3, 4, 5, 6);
  const content = Buffer.from('Subject: s\r\n\r\nFrom here\r\n.\r\n');
  const out = mailCopy(content, { flags: new Set(['F', 'R', 'O', 'D', '>', 'B']), eol: '\n', sender: '', originalRecipient: 'o@x', deliveredTo: 'd@x', now }).toString();
  assert.equal(out, 'From MAILER-DAEMON  Thu Dec  3 04:05:06 2026\nReturn-Path: <>\nX-Original-To: o@x\nDelivered-To: d@x\nSubject: s\n\n>From here\n.\n\n');
  const piped = mailCopy(content, { flags: new Set(['R', '.']), eol: '\r\n', sender: 'a@b', originalRecipient: '', deliveredTo: 'd@x', now }).toString();
  assert.equal(piped, 'Return-Path: <a@b>\r\nSubject: s\r\n\r\nFrom here\r\n..\r\n');
});
