// Certificate and public-key fingerprints as Postfix computes them, checked against openssl's own
// digests of the same certificate, for an RSA and an EC key (Node's `pubkey` is the bare EC point,
// not the SubjectPublicKeyInfo Postfix digests).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { X509Certificate } from 'node:crypto';
import { fingerprint, spki } from '../src/tls/fingerprint.js';
import { tempDirs } from './helpers/temp.js';

const tempDir = tempDirs('postactor-fprint-');

for (const key of [['rsa:2048'], ['ec', '-pkeyopt', 'ec_paramgen_curve:P-256']]) {
  test(`${key[0]} certificate: fingerprint and public-key fingerprint equal openssl's`, () => {
    const dir = tempDir();
    const cert = join(dir, 'cert.pem');
    execFileSync('openssl', ['req', '-x509', '-newkey', ...key, '-nodes', '-keyout', join(dir, 'key.pem'), '-out', cert, '-days', '1', '-subj', '/CN=fp.test'], { stdio: 'ignore' });
    const raw = new X509Certificate(readFileSync(cert)).raw;
    const want = execFileSync('openssl', ['x509', '-in', cert, '-noout', '-fingerprint', '-sha256'], { encoding: 'utf8' }).trim().split('=')[1];
    assert.equal(fingerprint(raw, 'sha256'), want);
    const pub = execFileSync('openssl', ['x509', '-in', cert, '-noout', '-pubkey'], { encoding: 'utf8' });
    const der = execFileSync('openssl', ['pkey', '-pubin', '-outform', 'DER'], { input: pub });
    const keyWant = execFileSync('openssl', ['dgst', '-sha256', '-hex'], { input: der, encoding: 'utf8' }).trim().split('= ')[1]!.toUpperCase().replace(/(..)(?!$)/g, '$1:');
    assert.equal(fingerprint(spki(raw), 'sha256'), keyWant);
  });
}
