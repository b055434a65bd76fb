// Postfix's global TLS library settings as Node's secure-context options: tls_ssl_options and
// the key-exchange group lists, with Postfix's warnings and fall-backs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { constants } from 'node:crypto';
import { loadConfig } from '../src/config/index.js';
import { keyExchangeGroups, sslOptions } from '../src/tls/openssl-options.js';
import { tempDirs } from './helpers/temp.js';

const tempDir = tempDirs('postactor-tlsopt-');

function configWith(mainCf: string) {
  return loadConfig(tempDir({ 'main.cf': `queue_directory = ${tempDir()}/q\n${mainCf}`, 'master.cf': 'cleanup unix n - n - 1 cleanup\n' }));
}

test('tls_ssl_options: Postfix\'s names in any case and hex numbers; unknown words warned about by name; renegotiation always off', () => {
  const warnings: string[] = [];
  const bits = sslOptions(configWith('tls_ssl_options = NO_TICKET, prioritize_chacha 0x00020000 enable_middlebox_compat frobnicate\n'), (w) => warnings.push(w));
  for (const b of [constants.SSL_OP_NO_TICKET, constants.SSL_OP_PRIORITIZE_CHACHA, constants.SSL_OP_NO_RENEGOTIATION, constants.SSL_OP_NO_COMPRESSION]) assert.ok((bits & b) >>> 0 === b >>> 0, `bit ${b.toString(16)}`);
  assert.deepEqual(warnings, ['unknown tls_ssl_options value "frobnicate" in "NO_TICKET, prioritize_chacha 0x00020000 enable_middlebox_compat frobnicate"']);
  // A number cannot turn on what other parameters manage (protocol versions here).
  const managed = sslOptions(configWith(`tls_ssl_options = 0x${(constants.SSL_OP_NO_TLSv1_3 >>> 0).toString(16)}\n`), () => undefined);
  assert.equal(managed & constants.SSL_OP_NO_TLSv1_3, 0);
  assert.equal(sslOptions(configWith(''), () => undefined), constants.SSL_OP_NO_RENEGOTIATION >>> 0);
});

test('tls_eecdh_auto_curves / tls_ffdhe_auto_groups: the usable groups, Postfix\'s fall-backs', () => {
  const warnings: string[] = [];
  assert.equal(keyExchangeGroups(configWith(''), (w) => warnings.push(w)), 'X25519:X448:prime256v1:secp521r1:secp384r1:ffdhe2048:ffdhe3072');
  assert.equal(warnings.length, 0);
  assert.equal(keyExchangeGroups(configWith('tls_eecdh_auto_curves = secp384r1 nosuchcurve\ntls_ffdhe_auto_groups =\n'), (w) => warnings.push(w)), 'secp384r1');
  assert.deepEqual(warnings.splice(0), ['ignoring unknown key exchange group "nosuchcurve"']);
  // Nothing usable: Postfix's defaults instead.
  assert.match(keyExchangeGroups(configWith('tls_eecdh_auto_curves = bogus\ntls_ffdhe_auto_groups =\n'), (w) => warnings.push(w))!, /^X25519:/);
  assert.deepEqual(warnings.splice(0), ['ignoring unknown key exchange group "bogus"', 'none of the configured key exchange groups are supported', 'using Postfix default key exchange groups instead']);
  // Both empty: OpenSSL's own defaults.
  assert.equal(keyExchangeGroups(configWith('tls_eecdh_auto_curves =\ntls_ffdhe_auto_groups =\n'), (w) => warnings.push(w)), undefined);
  assert.equal(warnings.length, 0);
});
