// The delivery agents' content checks (src/content/header-body-checks.ts) on their own, with real
// regexp tables: what the end-to-end tests (e2e-smtp-checks, e2e-lmtp-checks) do not reach —
// header checks alone leave the body as it is, bare-LF content keeps its line ends, the actions'
// warnings, and no checks at all means no checker.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { HeaderBodyChecks, LMTP_HBC_PARAMS, SMTP_HBC_PARAMS } from '../src/content/header-body-checks.js';
import type { Params } from '../src/config/declared.js';
import { tempDirs } from './helpers/temp.js';

const tempDir = tempDirs('postactor-hbc-');

function recorder() {
  const lines: string[] = [];
  return { lines, log: { info: (t: string) => lines.push(`info: ${t}`), warn: (t: string) => lines.push(`warning: ${t}`) } };
}

const LIMITS = { header_size_limit: 102400, mime_nesting_limit: 100, mime_boundary_length_limit: 2048 };

function smtpParams(p: Partial<Params<typeof SMTP_HBC_PARAMS>>): Params<typeof SMTP_HBC_PARAMS> {
  return { smtp_header_checks: [], smtp_mime_header_checks: [], smtp_nested_header_checks: [], smtp_body_checks: [], ...LIMITS, ...p };
}

test('no checks set: no checker (the content goes out as stored)', () => {
  const { log } = recorder();
  assert.equal(HeaderBodyChecks.create({ prefix: 'smtp', params: smtpParams({}) }, log), null);
  const lmtp: Params<typeof LMTP_HBC_PARAMS> = { lmtp_header_checks: [], lmtp_mime_header_checks: [], lmtp_nested_header_checks: [], lmtp_body_checks: [], ...LIMITS };
  assert.equal(HeaderBodyChecks.create({ prefix: 'lmtp', params: lmtp }, log), null);
});

test('header checks alone: the body is not looked at; bare LF line ends are kept; unchanged content is the same buffer', async () => {
  const dir = tempDir({ h: ['/^X-Drop:/ IGNORE', '/^Subject: (.*)/ REPLACE Subject: [out] $1', '/^X-Mark:/ PREPEND X-Before: 1', ''].join('\n') });
  const { lines, log } = recorder();
  const hbc = HeaderBodyChecks.create({ prefix: 'smtp', params: smtpParams({ smtp_header_checks: [`regexp:${path.join(dir, 'h')}`] }) }, log)!;
  const input = Buffer.from('Subject: hi\nX-Drop: a\n  folded\nX-Mark: m\n\nX-Drop: in the body\nSubject: in the body\n');
  const out = await hbc.content(input, 'QID');
  assert.equal(out.toString(), 'Subject: [out] hi\nX-Before: 1\nX-Mark: m\n\nX-Drop: in the body\nSubject: in the body\n');
  assert.deepEqual(lines, ['info: QID: replace: header Subject: hi: Subject: [out] hi', 'info: QID: prepend: header X-Mark: m: X-Before: 1']);
  const same = Buffer.from('To: <a@b>\r\n\r\nbody\r\n');
  assert.equal(await hbc.content(same, 'QID'), same);
});

test('the warnings of hbc_action: without text, not a header, unsupported (the whole value), in any case', async () => {
  const dir = tempDir({
    h: ['/^X-A:/ REPLACE', '/^X-B:/ prepend not a header', '/^X-C:/ Reject 5.7.1 no', '/^X-D:/ ok', '/^X-E:/ Warn', ''].join('\n'),
    b: ['/^line$/ PREPEND not a header but a body line', '/^bcc$/ BCC x@y', ''].join('\n'),
  });
  const { lines, log } = recorder();
  const hbc = HeaderBodyChecks.create({ prefix: 'lmtp', params: { lmtp_header_checks: [`regexp:${path.join(dir, 'h')}`], lmtp_mime_header_checks: [], lmtp_nested_header_checks: [], lmtp_body_checks: [`regexp:${path.join(dir, 'b')}`], ...LIMITS } }, log)!;
  const input = Buffer.from('X-A: 1\r\nX-B: 2\r\nX-C: 3\r\nX-D: 4\r\nX-E: 5\r\n\r\nline\r\nbcc\r\n');
  const out = await hbc.content(input, 'QID');
  assert.equal(out.toString(), 'X-A: 1\r\nX-B: 2\r\nX-C: 3\r\nX-D: 4\r\nX-E: 5\r\n\r\nnot a header but a body line\r\nline\r\nbcc\r\n');
  assert.deepEqual(lines, [
    'warning: REPLACE action without text in lmtp_header_checks map',
    'warning: bad PREPEND header text "not a header" in lmtp_header_checks map -- need "headername: headervalue"',
    'warning: unsupported command in lmtp_header_checks map: Reject 5.7.1 no',
    'info: QID: warning: header X-E: 5',
    'info: QID: prepend: body line: not a header but a body line',
    'warning: unsupported command in lmtp_body_checks map: BCC x@y',
  ]);
});
