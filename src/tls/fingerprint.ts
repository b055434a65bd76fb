/**
 * Certificate and public-key fingerprints as Postfix computes them (tls_fprint.c): the digest of
 * the certificate's DER, and of its DER SubjectPublicKeyInfo — not Node's `pubkey`, which for an
 * EC key is the bare point. Uppercase hex with colons, as Postfix prints and matches them.
 */
import { createHash, X509Certificate } from 'node:crypto';

export function fingerprint(der: Buffer, digest: string): string {
  return createHash(digest).update(der).digest('hex').toUpperCase().replace(/(..)(?!$)/g, '$1:');
}

/** The DER SubjectPublicKeyInfo of a DER certificate. */
export function spki(raw: Buffer): Buffer {
  return new X509Certificate(raw).publicKey.export({ type: 'spki', format: 'der' });
}
