/**
 * cleanup's map-driven address work and content-check helpers, pinned to Postfix's behaviour
 * (cleanup(8), canonical(5), virtual(5), header_checks(5)). Real tables (inline:, texthash:,
 * regexp:) through src/maps; configs built from main.cf text.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { buildConfig } from '../src/config/load.js';
import { canonicalize, dedupe, expandVirtual, loadMappings, MappingFailure, masquerade, masqueradeClass } from '../actors/cleanup/mappings.js';
import { checkInput, logForm, parseAction, rewriteAddressList, splitHeaderFields } from '../actors/cleanup/checks.js';

function mappings(main: string) {
  return loadMappings(buildConfig(null, `myhostname = mx.example.com\n${main}\n`, ''));
}

const nowarn = () => { /* no warnings expected */ };

test('canonical(5): sender_canonical_maps, then canonical_maps; recipient maps only for recipients; query order user@domain, user, @domain', async () => {
  const m = mappings([
    'sender_canonical_maps = inline:{ joe@example.com=joe.smith@example.com }',
    'recipient_canonical_maps = inline:{ sales@example.com=team@example.com }',
    'canonical_maps = inline:{ joe.smith@example.com=js@example.org, @old.example=@new.example, root=admin@example.com }',
  ].join('\n'));
  const cases: [string, 'envelope_sender' | 'envelope_recipient' | 'header_sender' | 'header_recipient', string][] = [
    ['joe@example.com', 'envelope_sender', 'js@example.org'],       // sender map, then canonical_maps
    ['joe@example.com', 'envelope_recipient', 'joe@example.com'],   // sender map not for recipients
    ['sales@example.com', 'envelope_recipient', 'team@example.com'],
    ['sales@example.com', 'envelope_sender', 'sales@example.com'],
    ['anyone@old.example', 'header_recipient', '@new.example'],       // @domain key: value used as is
    ['root@mx.example.com', 'envelope_sender', 'admin@example.com'], // bare user for a local domain
    ['root@elsewhere.example', 'envelope_sender', 'root@elsewhere.example'], // not for a remote one
    ['', 'envelope_sender', ''],                                      // the null sender stays
  ];
  for (const [input, cls, want] of cases) assert.equal(await canonicalize(m, input, cls, nowarn), want, `${cls} ${input}`);
});

test('canonical_classes limits which addresses canonical_maps sees', async () => {
  const m = mappings('canonical_maps = inline:{ a@x.example=b@x.example }\ncanonical_classes = envelope_recipient');
  assert.equal(await canonicalize(m, 'a@x.example', 'envelope_sender', nowarn), 'a@x.example');
  assert.equal(await canonicalize(m, 'a@x.example', 'envelope_recipient', nowarn), 'b@x.example');
});

test('canonical mapping stops at an address that maps to itself, and warns after 10 rounds of a loop', async () => {
  const m = mappings('canonical_maps = inline:{ a@x.example=b@x.example, b@x.example=b@x.example, p@x.example=q@x.example, q@x.example=p@x.example }');
  assert.equal(await canonicalize(m, 'a@x.example', 'envelope_sender', nowarn), 'b@x.example');
  const warnings: string[] = [];
  await canonicalize(m, 'p@x.example', 'envelope_sender', (w) => warnings.push(w));
  assert.deepEqual(warnings, ['unreasonable canonical_maps map nesting for p@x.example -- message not accepted, try again later']);
});

test('recipient_delimiter: user+ext@domain falls back to user@domain and the extension is propagated (propagate_unmatched_extensions)', async () => {
  const m = mappings('recipient_delimiter = +\ncanonical_maps = inline:{ joe@example.com=joseph@example.org }\nvirtual_alias_maps = inline:{ ann@example.com=anne@example.net }');
  assert.equal(await canonicalize(m, 'joe+list@example.com', 'envelope_recipient', nowarn), 'joseph+list@example.org');
  assert.deepEqual(await expandVirtual(m, 'ann+x@example.com'), ['anne+x@example.net']);
});

test('masquerade_domains: the first parent domain wins, "!" exceptions, masquerade_exceptions', () => {
  const domains = ['!sub.example.com', 'example.com', 'example.org'];
  const cases: [string, string][] = [
    ['joe@host.example.com', 'joe@example.com'],
    ['joe@a.b.example.com', 'joe@example.com'],
    ['joe@sub.example.com', 'joe@sub.example.com'],      // excepted
    ['joe@host.sub.example.com', 'joe@host.sub.example.com'], // and its subdomains
    ['joe@example.com', 'joe@example.com'],              // already the domain
    ['joe@notexample.com', 'joe@notexample.com'],        // not a parent: label boundary
    ['root@host.example.org', 'root@host.example.org'],  // masquerade_exceptions
    ['joe', 'joe'],
  ];
  for (const [input, want] of cases) assert.equal(masquerade(domains, new Set(['root']), input), want, input);
});

test('masquerade_classes default: envelope sender and headers, not envelope recipients', () => {
  const m = mappings('masquerade_domains = example.com');
  assert.equal(masqueradeClass(m, 'a@h.example.com', 'envelope_sender'), 'a@example.com');
  assert.equal(masqueradeClass(m, 'a@h.example.com', 'header_recipient'), 'a@example.com');
  assert.equal(masqueradeClass(m, 'a@h.example.com', 'envelope_recipient'), 'a@h.example.com');
});

test('virtual(5): recursive one-to-many expansion; an address that maps to itself is kept', async () => {
  const m = mappings([
    'virtual_alias_maps = inline:{ {all@v.example = a@v.example, b@v.example}, a@v.example=alice@mail.example,',
    '  {b@v.example = b@v.example, bob@mail.example}, @catch.example=postmaster@mail.example }',
  ].join(''));
  assert.deepEqual(await expandVirtual(m, 'all@v.example'), ['alice@mail.example', 'b@v.example', 'bob@mail.example']);
  assert.deepEqual(await expandVirtual(m, 'x@catch.example'), ['postmaster@mail.example']);
  assert.deepEqual(await expandVirtual(m, 'nobody@v.example'), ['nobody@v.example']);
});

test('virtual aliases: a loop (a→b→a) and a too-wide expansion are not accepted: 451 4.6.0 Alias expansion error', async () => {
  const loop = mappings('virtual_alias_maps = inline:{ a@v.example=b@v.example, b@v.example=a@v.example }\nvirtual_alias_recursion_limit = 20');
  await assert.rejects(expandVirtual(loop, 'a@v.example'), (e: unknown) => {
    assert.ok(e instanceof MappingFailure);
    assert.equal(e.log, 'unreasonable virtual_alias_maps map nesting for a@v.example -- message not accepted, try again later');
    assert.deepEqual([e.code, e.dsn, e.text], [451, '4.6.0', 'Alias expansion error']);
    return true;
  });
  const wide = mappings('virtual_alias_maps = inline:{ {list@v.example = u1@x, u2@x, u3@x, u4@x} }\nvirtual_alias_expansion_limit = 3');
  await assert.rejects(expandVirtual(wide, 'list@v.example'), /map expansion size for list@v.example/);
  const ok = mappings('virtual_alias_maps = inline:{ {list@v.example = u1@x, u2@x, u3@x} }\nvirtual_alias_expansion_limit = 3');
  assert.equal((await expandVirtual(ok, 'list@v.example')).length, 3);
});

test('a broken table (file:line error) is a temporary failure, never a miss', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cleanup-test-'));
  try {
    fs.writeFileSync(path.join(dir, 'bad'), '/unclosed( x\n');
    assert.throws(() => mappings(`canonical_maps = regexp:${dir}/bad`), /bad:1: /);
  } finally {
    fs.rmSync(dir, { recursive: true });
  }
});

test('duplicate recipients are removed (same address, ORCPT and NOTIFY), up to duplicate_filter_limit', () => {
  const r = (address: string, orcpt?: string) => ({ address, ...(orcpt ? { orcpt } : {}) });
  assert.deepEqual(dedupe([r('a@x'), r('b@x'), r('a@x'), r('a@x', 'rfc822;a@y')], 1000), [r('a@x'), r('b@x'), r('a@x', 'rfc822;a@y')]);
  assert.equal(dedupe([r('a@x'), r('b@x'), r('b@x')], 1).length, 3); // only the first is remembered
  // NOTIFY is part of the key, as in cleanup_out_recipient.c.
  const n = (address: string, notify: string[]) => ({ address, notify });
  assert.deepEqual(dedupe([n('a@x', ['NEVER']), n('a@x', ['SUCCESS']), n('a@x', ['NEVER'])], 1000), [n('a@x', ['NEVER']), n('a@x', ['SUCCESS'])]);
});

test('header_checks actions: REJECT/DEFER with default and explicit status, the others with their text', () => {
  const cases: [string, unknown][] = [
    ['REJECT', { kind: 'reject', dsn: '5.7.1', text: 'message content rejected' }],
    ['reject no spam here', { kind: 'reject', dsn: '5.7.1', text: 'no spam here' }],
    ['REJECT 5.7.9 custom', { kind: 'reject', dsn: '5.7.9', text: 'custom' }],
    ['DEFER try later', { kind: 'defer', dsn: '4.7.1', text: 'try later' }],
    ['WARN', { kind: 'warn', text: '' }],
    ['HOLD quarantine', { kind: 'hold', text: 'quarantine' }],
    ['DISCARD', { kind: 'discard', text: '' }],
    ['PREPEND X-Seen: yes', { kind: 'prepend', text: 'X-Seen: yes' }],
    ['REPLACE Subject: clean', { kind: 'replace', text: 'Subject: clean' }],
    ['IGNORE', { kind: 'ignore' }],
    ['REDIRECT abuse@example.com', { kind: 'redirect', address: 'abuse@example.com' }],
    ['FILTER scan:[127.0.0.1]:10025', { kind: 'filter', nexthop: 'scan:[127.0.0.1]:10025' }],
    ['BCC audit@example.com', { kind: 'bcc', address: 'audit@example.com' }],
    ['DUNNO', { kind: 'dunno' }],
    ['OK', { kind: 'dunno' }],
    ['FROBNICATE', { kind: 'unknown', value: 'FROBNICATE' }],
    ['FILTER nocolon', { kind: 'unknown', value: 'FILTER nocolon' }],
  ];
  for (const [value, want] of cases) assert.deepEqual(parseAction(value), want, value);
});

test('header_checks input: one logical header, folded lines joined by their newline (CR removed), header_size_limit applied', () => {
  const fields = splitHeaderFields('Subject: one\r\n\ttwo\r\nFrom: a@b\r\n');
  assert.deepEqual(fields.map((f) => f.name), ['subject', 'from']);
  assert.equal(checkInput(fields[0]!.raw, 102400), 'Subject: one\n\ttwo');
  assert.equal(checkInput(fields[0]!.raw, 10), 'Subject: o');
  assert.equal(logForm('Subject: one\n\ttwo'), 'Subject: one\ttwo');
});

test('header address rewriting changes only the addresses (phrases, comments, groups kept)', async () => {
  const map = async (a: string) => (a === 'joe@h.example' ? 'joe@example.com' : a === 'b@x' ? 'c@y' : a);
  const cases: [string, string][] = [
    [' Joe <joe@h.example>\r\n', ' Joe <joe@h.example>'.replace('joe@h.example', 'joe@example.com') + '\r\n'],
    [' joe@h.example (Joe)\r\n', ' joe@example.com (Joe)\r\n'],
    [' "Smith, J" <joe@h.example>, b@x\r\n', ' "Smith, J" <joe@example.com>, c@y\r\n'],
    [' team: joe@h.example, b@x;, other@z\r\n', ' team: joe@example.com, c@y;, other@z\r\n'],
    [' undisclosed-recipients:;\r\n', ' undisclosed-recipients:;\r\n'],
    [' <@relay.example:joe@h.example>\r\n', ' <@relay.example:joe@example.com>\r\n'],
    [' a@b,\r\n\tjoe@h.example\r\n', ' a@b,\r\n\tjoe@example.com\r\n'],
  ];
  for (const [input, want] of cases) assert.equal(await rewriteAddressList(input, map), want, input);
});
