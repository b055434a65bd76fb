/**
 * The body stage of cleanup (Postfix's cleanup_message.c body callbacks, driven by mime_state):
 * after the primary headers, the headers of each multipart part and attached message go through
 * mime_header_checks or nested_header_checks, and each body line through body_checks (at most
 * body_checks_size_limit bytes of each body segment). The content is rebuilt only when an action
 * changed something.
 */
import type { CleanupRequest } from '../protocol.js';
import { applyAction, type Edit } from './act.js';
import { checkInput, checkTables, parseAction } from './checks.js';
import { MIME_HEADERS, walkMime } from '../../src/content/mime.js';
import type { CleanupSettings, Tables } from './settings.js';
import { filtering, type Failure, type Verdict } from './state.js';

type BodySettings = Pick<CleanupSettings, 'disableMime' | 'mimeLimits' | 'headerSizeLimit' | 'bodyChecksSizeLimit'>;

/**
 * The content after the body checks: unchanged when no check applies (`checksOK` false: no
 * header/body checks for this message), or a REJECT / DEFER as the failure.
 */
export async function bodyChecks(s: BodySettings, t: Tables, request: CleanupRequest, verdict: Verdict, content: Uint8Array, eol: string, checksOK: boolean): Promise<Failure | { content: Uint8Array }> {
  const partHeaders = !s.disableMime && (t.mimeHeaderChecks.length > 0 || t.nestedHeaderChecks.length > 0);
  if (!checksOK || (t.bodyChecks.length === 0 && !partHeaders)) return { content };
  return contentChecks(s, t, request, verdict, content, eol);
}

/**
 * The content checks after the primary headers (Postfix's mime_state callbacks in cleanup): the
 * headers of each multipart part and attached message through mime_header_checks or
 * nested_header_checks, each body line through body_checks; rebuilds the content only when
 * something changed.
 */
async function contentChecks(s: BodySettings, t: Tables, request: CleanupRequest, verdict: Verdict, content: Uint8Array, eol: string): Promise<Failure | { content: Uint8Array }> {
  const buf = Buffer.from(content.buffer, content.byteOffset, content.byteLength);
  const parts: Buffer[] = [];
  let copied = 0;
  const edit = (start: number, end: number, r: Edit) => {
    if (r.prepend === undefined && !r.drop && r.replace === undefined) return;
    parts.push(buf.subarray(copied, start));
    if (r.prepend !== undefined) parts.push(Buffer.from(r.prepend + eol, 'utf8'));
    if (r.replace !== undefined) parts.push(Buffer.from(r.replace + eol, 'utf8'));
    else if (!r.drop) parts.push(buf.subarray(start, end));
    copied = end;
  };
  for (const ev of walkMime(content, s.mimeLimits, s.disableMime)) {
    if (!filtering(verdict)) break;
    if (ev.kind === 'header') {
      if (ev.cls === 'primary') continue; // done with the header section above
      // A MIME header, or any header of a multipart part: mime_header_checks; the other
      // headers of an attached message: nested_header_checks.
      const mime = MIME_HEADERS.has(ev.name) || ev.cls === 'multipart';
      const tables = mime ? t.mimeHeaderChecks : t.nestedHeaderChecks;
      if (tables.length === 0) continue;
      const input = checkInput(buf.subarray(ev.start, ev.end).toString('latin1'), s.headerSizeLimit);
      const value = await checkTables(tables, input);
      if (value === null) continue;
      const r = applyAction(request, verdict, parseAction(value), 'header', input, mime ? 'mime_header_checks' : 'nested_header_checks');
      if ('ok' in r) return r;
      edit(ev.start, ev.end, r);
      continue;
    }
    if (t.bodyChecks.length === 0 || (s.bodyChecksSizeLimit > 0 && ev.offset >= s.bodyChecksSizeLimit)) {
      // Without MIME processing the body is one segment: nothing after this is checked.
      if (s.disableMime) break;
      continue;
    }
    const line = buf.subarray(ev.start, ev.end).toString('utf8').replace(/\r?\n$/, '');
    const value = await checkTables(t.bodyChecks, line);
    if (value === null) continue;
    const r = applyAction(request, verdict, parseAction(value), 'body', line);
    if ('ok' in r) return r;
    edit(ev.start, ev.end, r);
  }
  if (parts.length === 0) return { content };
  parts.push(buf.subarray(copied));
  return { content: Buffer.concat(parts) };
}
