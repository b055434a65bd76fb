/**
 * syntax.ts takes a plain MAIL FROM / RCPT TO address (local@domain, no parameters) without
 * smtp-server's parser: for every address here the answer must be the parser's own, whether
 * the short path takes it or not (in-process, smtp-server's real connection class).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { smtpConnectionPrototype } from '../actors/smtpd/engine.js';
import { domainOk, installSyntax } from '../actors/smtpd/syntax.js';
import { configureMaillog } from '../src/log/maillog.js';

type Parse = (this: object, name: string, command: unknown) => unknown;

const ADDRESSES = [
  'user@example.com', 'User.Name+tag@Sub.Example.COM', "a!#$%&'*+/=?^_`{|}~-b@x.org", 'a@b', 'a@localhost',
  'first.last@a-b.example', 'x@xn--bcher-kva.example', 'x@XN--bcher-kva.example', 'xn--a@example.com',
  'a..b@example.com', '.a@example.com', 'a.@example.com', 'a@.example.com', 'a@example.com.', 'a@ex..ample.com',
  'a@ex.-ample.com', 'a@ex-.ample.com', 'a-.b@example.com', 'a.-b@example.com', 'a@-example.com', 'a@example-.com',
  'a@@example.com', '@example.com', 'a@', 'a', 'postmaster', 'Postmaster', 'a@[127.0.0.1]', 'a@[IPv6:::1]',
  '@relay.example:a@example.com', 'a b@example.com', 'a@exa mple.com', 'a@exämple.com', 'ä@example.com',
  `${'a'.repeat(241)}@example.com`, `${'a'.repeat(242)}@example.com`, `${'a'.repeat(300)}@example.com`,
  'a(b)@example.com', 'a,b@example.com', 'a;b@example.com', 'a\\b@example.com', 'a@exa_mple.com',
];

test('a plain address gets the answer smtp-server\'s parser gives', async () => {
  configureMaillog({ file: '/dev/null' }); // the "Illegal address syntax" warnings
  const proto = smtpConnectionPrototype();
  const library = proto._parseAddressCommand as Parse;
  installSyntax(proto);
  const ours = proto._parseAddressCommand as Parse;
  assert.notEqual(ours, library, 'syntax.ts patched the parser');
  for (const strict of [false, true]) {
    const conn = {
      // As smtpd sets it: smtp-server's lenient parsing unless strict_rfc821_envelopes.
      _server: { options: { lenientAddressParsing: !strict, postactorSyntax: { strict, heloRequired: false }, postactorLimits: { namaddr: () => 'test[127.0.0.1]' } }, logger: { error() {}, info() {} } },
      session: {}, remoteAddress: '127.0.0.1', id: 'test',
    };
    for (const name of ['MAIL FROM', 'RCPT TO']) {
      for (const address of ADDRESSES) {
        for (const command of [`${name}:<${address}>`, `${name.toLowerCase()}:<${address}>`, `${name} :<${address}>`]) {
          // The parser's answer, then the domain as Postfix's resolve checks it (syntax.ts domainOk).
          const parsed = library.call(conn, name, command) as { address?: string } | false;
          const expected = parsed && parsed.address && !domainOk(parsed.address) ? false : parsed;
          assert.deepEqual(ours.call(conn, name, command), expected, `${command} (strict ${strict})`);
        }
      }
      // Postfix's answers where they differ from smtp-server's strict parser: any local part
      // (without strict_rfc821_envelopes), never a domain that is no host name or address literal.
      for (const [address, ok] of [['a..b@example.com', !strict], ['a.@example.com', !strict], [`${'a'.repeat(300)}@example.com`, !strict],
        ['a@-example.com', false], ['a@example-.com', false], ['a@1.2.3.4', false], ['a@[999.1.1.1]', false], ['a@[1.2.3.4]', true]] as const) {
        assert.equal(Boolean(ours.call(conn, name, `${name}:<${address}>`)), ok, `${address} (strict ${strict})`);
      }
      // The command's name must match, whatever the address.
      assert.equal(ours.call(conn, name, `${name === 'MAIL FROM' ? 'RCPT TO' : 'MAIL FROM'}:<a@example.com>`), false);
    }
  }
});
