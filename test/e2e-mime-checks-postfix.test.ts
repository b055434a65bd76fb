/**
 * header_checks, mime_header_checks, nested_header_checks and body_checks side by side with
 * Debian's Postfix (bench/postfix-peer.sh): the same MIME messages, the same tables, the same
 * end-of-DATA replies — which table saw which header (primary, multipart part, attached
 * message, multipart/digest), and where part headers end; and with disable_mime_input_processing.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { SmtpSink } from '../src/smtp/sink.js';
import { sendRaw, type TestServer } from './helpers/server.js';
import { sideBySide, type SideBySide } from './helpers/side-by-side.js';
import { needs } from './helpers/peers.js';
import type { MtaHandle } from '../bench/relay/mta.js';

// Each rule answers with the table's name, so a reply says which table saw the header.
const rules = (table: string) => [
  `/^X-Probe: (.*)/ REJECT 5.7.1 ${table} saw $1`,
  `/^Content-Type: .*probe-(.*)/ REJECT 5.7.1 ${table} saw content-type $1`,
  `/^Subject: probe-(.*)/ REJECT 5.7.1 ${table} saw subject $1`,
  '/^X-Default-Reject:/ REJECT',
  '',
].join('\n');

const BODY = [
  '/^X-Probe: (.*)/ REJECT 5.7.1 body_checks saw $1',
  '/^Subject: probe-(.*)/ REJECT 5.7.1 body_checks saw subject $1',
  '/^body-probe/ REJECT 5.7.1 body_checks saw a body line',
  '',
].join('\n');

function msg(lines: string[]): string {
  return ['From: <a@client.test>', 'To: <user@example.com>', ...lines, ''].join('\r\n');
}

const CASES: Record<string, string> = {
  'primary non-MIME header': msg(['X-Probe: primary', '', 'x']),
  'primary Content-Type': msg(['Content-Type: text/plain; x=probe-primary', '', 'x']),
  'part Content-Type': msg(['Content-Type: multipart/mixed; boundary=B', '', '--B', 'Content-Type: text/plain; x=probe-part', '', 'x', '--B--']),
  'part non-MIME header': msg(['Content-Type: multipart/mixed; boundary=B', '', '--B', 'X-Probe: part', '', 'x', '--B--']),
  'attached message header': msg(['Content-Type: multipart/mixed; boundary=B', '', '--B', 'Content-Type: message/rfc822', '', 'Subject: probe-nested', '', 'x', '--B--']),
  'attached message Content-Type': msg(['Content-Type: multipart/mixed; boundary=B', '', '--B', 'Content-Type: message/rfc822', '', 'Content-Type: text/plain; x=probe-nested', '', 'x', '--B--']),
  'top-level message/rfc822': msg(['Content-Type: message/rfc822', '', 'X-Probe: top-nested', '', 'x']),
  'multipart/digest part': msg(['Content-Type: multipart/digest; boundary=D', '', '--D', '', 'Subject: probe-digest', '', 'x', '--D--']),
  'a line ending part headers': msg(['Content-Type: multipart/mixed; boundary=B', '', '--B', 'Content-Type: text/plain', 'not a header', 'X-Probe: after-garbage', '', 'x', '--B--']),
  'a header after the closing boundary': msg(['Content-Type: multipart/mixed; boundary=B', '', '--B', '', 'x', '--B--', 'X-Probe: epilogue']),
  'quoted boundary with a comment': msg(['Content-Type: multipart/mixed (c); boundary="a b"', '', '--a b', 'X-Probe: quoted', '', 'x', '--a b--']),
  'body line of a part': msg(['Content-Type: multipart/mixed; boundary=B', '', '--B', 'Content-Type: text/plain', '', 'body-probe', '--B--']),
  'REJECT without text': msg(['X-Default-Reject: yes', '', 'x']),
  'a header-like body line': msg(['MIME-Version: 1.0', '', 'X-Probe: in-body']),
};

async function replies(port: number): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const [name, text] of Object.entries(CASES)) out[name] = (await sendRaw(port, 'a@client.test', ['user@example.com'], text)).line.replace(/queued as \S+/, 'queued');
  return out;
}

for (const disabled of [false, true]) {
  describe(`MIME header checks: Postactor and Postfix side by side${disabled ? ', disable_mime_input_processing = yes' : ''}`, { skip: needs('/usr/sbin/postfix', "Debian's Postfix, the peer") }, () => {
    let tdir: string;
    let sink: SmtpSink;
    let postfix: MtaHandle;
    let server: TestServer;
    let pair: SideBySide | undefined;
    let settings: Record<string, string>;

    before(async () => {
      tdir = fs.mkdtempSync(path.join(os.tmpdir(), 'mime-postfix-'));
      for (const t of ['header_checks', 'mime_header_checks', 'nested_header_checks']) fs.writeFileSync(path.join(tdir, t), rules(t));
      fs.writeFileSync(path.join(tdir, 'body_checks'), BODY);
      settings = {
        header_checks: `regexp:${tdir}/header_checks`,
        mime_header_checks: `regexp:${tdir}/mime_header_checks`,
        nested_header_checks: `regexp:${tdir}/nested_header_checks`,
        body_checks: `regexp:${tdir}/body_checks`,
        ...(disabled ? { disable_mime_input_processing: 'yes' } : {}),
      };
      pair = await sideBySide({ settings, sharedSink: true });
      ({ postfix, server, paSink: sink } = pair);
    });

    after(async () => {
      await pair?.close();
      if (tdir) fs.rmSync(tdir, { recursive: true, force: true });
    });

    test('every message gets the same end-of-DATA reply', async () => {
      const fromPostfix = await replies(postfix.port);
      const fromPostactor = await replies(server.port);
      assert.deepEqual(fromPostactor, fromPostfix);
      // And the cases do tell the tables apart.
      if (!disabled) {
        assert.match(fromPostfix['part non-MIME header']!, /mime_header_checks saw part/);
        assert.match(fromPostfix['attached message header']!, /nested_header_checks saw subject nested/);
      } else {
        assert.match(fromPostfix['part non-MIME header']!, /body_checks saw part/);
        assert.match(fromPostfix['primary Content-Type']!, /mime_header_checks saw content-type primary/);
      }
    });
  });
}
