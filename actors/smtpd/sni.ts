/**
 * tls_server_sni_maps in smtpd: the certificate chain a client gets for the name it asks for
 * with SNI, as Postfix's server_sni_callback (tls_misc.c) chooses it.
 *
 * The tables are looked up with the name as sent, then with each parent domain as ".parent"
 * (a.b.example: a.b.example, .b.example, .example). The value names the files to load, each as
 * smtpd_tls_chain_files reads them (key first, then its certificate and chain). A name that
 * matches nothing gets the default chain and the line "TLS SNI name from host[addr] not matched,
 * using default chain"; a name that is no valid host name is a warning. A matched name shows in
 * the "TLS connection established from host[addr] to name" line.
 *
 * Each smtpd thread loads every chain its tables name when it starts (tables that can list their
 * entries: texthash, inline, lmdb/hash; others on the first lookup that needs one) and keeps
 * them; a reload starts new threads, which read the files again. A chain that cannot be loaded
 * is warned about, at start, and the default chain is used for its names (Postfix fails those
 * handshakes: smtp-server's SNI hook cannot).
 */
import { readFileSync } from 'node:fs';
import * as tls from 'node:tls';
import type { Config } from '../../src/config/index.js';
import type { Params } from '../../src/config/declared.js';
import { TableError } from '../../src/maps/index.js';
import { validHostname } from '../../src/smtpd/restrictions/hostname.js';
import { openPolicyTable, tableSpecError, type PolicyTable } from '../../src/smtpd/restrictions/tables.js';
import { chainFromText, osError } from '../../src/smtpd/tls.js';

/** What became of a name a client sent. */
export type SniOutcome = 'matched' | 'unmatched' | 'invalid' | 'failed';

/** What the SNI tables read (with the rest of smtpd's: index.ts SMTPD_PARAMS). */
export const SNI_PARAMS = {
  'tls_server_sni_maps': 'list',
} as const;

export class SniMaps {
  private readonly tables: PolicyTable[] = [];
  /** Secure contexts by the table value that named their files (null: could not be loaded). */
  private readonly contexts = new Map<string, tls.SecureContext | null>();
  /** The outcome per name, for the log lines written once the handshake is done. */
  private readonly outcomes = new Map<string, SniOutcome>();

  /**
   * `base`: the default context's options (protocols, ciphers, client-certificate CAs), which
   * every per-name context shares; only the keys and chains differ.
   */
  constructor(config: Config, p: Params<typeof SNI_PARAMS>, private readonly base: tls.SecureContextOptions, private readonly warn: (text: string) => void) {
    for (const spec of p.tls_server_sni_maps) {
      const err = tableSpecError(spec);
      if (err) {
        warn(`tls_server_sni_maps: ${err}`);
        continue;
      }
      this.tables.push(openPolicyTable(spec, config.configDirectory, (m) => warn(`${spec}: ${m}`)));
    }
    for (const t of this.tables) {
      for (const [, value] of t.entries?.() ?? []) this.context(value);
    }
  }

  /** The context for a table value, loaded once. */
  private context(value: string): tls.SecureContext | null {
    let ctx = this.contexts.get(value);
    if (ctx === undefined) {
      ctx = this.load(value);
      this.contexts.set(value, ctx);
    }
    return ctx;
  }

  get enabled(): boolean {
    return this.tables.length > 0;
  }

  /** Node's SNICallback: the context for the name, or undefined for the default one. */
  readonly callback = (servername: string, cb: (err: Error | null, ctx?: tls.SecureContext) => void): void => {
    void this.resolve(servername).then((ctx) => cb(null, ctx ?? undefined), (err: Error) => cb(err));
  };

  /** The outcome for a name a handshake used (undefined when none was looked up). */
  outcome(servername: string): SniOutcome | undefined {
    return this.outcomes.get(servername.toLowerCase());
  }

  private record(name: string, o: SniOutcome): void {
    // Names come from clients: keep the memory bounded.
    if (this.outcomes.size >= 4096) this.outcomes.clear();
    this.outcomes.set(name.toLowerCase(), o);
  }

  private async resolve(servername: string): Promise<tls.SecureContext | null> {
    if (!servername) return null;
    if (!validHostname(servername)) {
      this.record(servername, 'invalid');
      return null;
    }
    const value = await this.find(servername);
    if (value === null) {
      this.record(servername, 'unmatched');
      return null;
    }
    const ctx = this.context(value);
    this.record(servername, ctx ? 'matched' : 'failed');
    return ctx;
  }

  /** The name, then ".parent" for each parent domain, in each table in turn. */
  private async find(name: string): Promise<string | null> {
    const keys = [name];
    for (let dot = name.indexOf('.', 1); dot > 0; dot = name.indexOf('.', dot + 1)) keys.push(name.slice(dot));
    for (const key of keys) {
      for (const t of this.tables) {
        try {
          const r = await t.lookup(t.kind !== 'pattern' && t.foldsCase !== false ? key.toLowerCase() : key);
          if (r.found) return r.value;
        } catch (e) {
          if (!(e instanceof TableError)) throw e;
          this.warn(`tls_server_sni_maps: ${name} map lookup problem`);
          return null;
        }
      }
    }
    return null;
  }

  /** The files a value names, loaded as chain files into a context of their own. */
  private load(value: string): tls.SecureContext | null {
    const keys: string[] = [];
    const certs: string[] = [];
    for (const file of value.split(/[\s,]+/).filter(Boolean)) {
      let text: string;
      try {
        text = readFileSync(file, 'utf8');
      } catch (err) {
        this.warn(`error opening chain file: ${file}: ${osError(err)}`);
        return null;
      }
      const chain = chainFromText(text, file, this.warn);
      if (chain === null) return null;
      keys.push(...chain.keys);
      certs.push(...chain.certs);
    }
    try {
      return tls.createSecureContext({ ...this.base, key: keys, cert: certs });
    } catch (err) {
      this.warn(`TLS library problem: ${(err as Error).message}`);
      return null;
    }
  }
}
