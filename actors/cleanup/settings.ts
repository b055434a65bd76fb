/**
 * cleanup's settings and tables, read once from main.cf (Postfix's cleanup_init.c: the parameter
 * tables and the maps opened before any message is processed). Everything here depends on the
 * configuration only, so the stages can be given it in a test as the worker gives it to them.
 */
import type { Config } from '../../src/config/index.js';
import { readParams, type Params } from '../../src/config/declared.js';
import { maillog } from '../../src/log/maillog.js';
import { openTable, type LookupTable } from '../../src/maps/index.js';
import { buildNetworks, type NetworkList } from '../../src/net/networks.js';
import { splitTableList, loadMappings, MapList, MAPPING_PARAMS, type Mappings } from './mappings.js';
import { CleanupMilters, CLEANUP_MILTER_PARAMS } from './milter.js';
import { smtputf8Settings, type Smtputf8Settings } from './smtputf8.js';
import type { MimeLimits } from '../../src/content/mime.js';
import type { RewriteSettings } from '../../src/rewrite/rewrite.js';

const log = maillog('cleanup');

export interface CleanupSettings {
  myhostname: string;
  mailName: string;
  hopLimit: number;
  /** cleanup_replace_stray_cr_lf. */
  replaceStrayCr: boolean;
  alwaysAdd: boolean;
  /** Clients whose messages get missing headers (local_header_rewrite_clients). */
  rewriteClients: (client: { addr: string; saslUsername?: string }) => boolean;
  /** Local submissions (origin 'pickup'): append_at_myorigin and friends. */
  myorigin: string;
  appendAtMyorigin: boolean;
  emptyAddressRecipient: string;
  undisclosedRecipientsHeader: string;
  /** Tables of the address mappings and content checks; `broken` when one failed to load. */
  tables: Tables | { broken: string };
  /** receive_override_options (main.cf: cleanup is one shared service here). */
  noAddressMappings: boolean;
  noHeaderBodyChecks: boolean;
  remoteHeaderRewriteDomain: string;
  /** trivial-rewrite's settings, for the addresses of header fields in the header rewrite context. */
  rewrite: RewriteSettings;

  headerSizeLimit: number;
  bodyChecksSizeLimit: number;
  /** disable_mime_input_processing, and mime_nesting_limit / mime_boundary_length_limit. */
  disableMime: boolean;
  mimeLimits: MimeLimits;
  smtputf8: Smtputf8Settings;
  /** non_smtpd_milters (local submissions). */
  milters: CleanupMilters | null;
}

export interface Tables {
  mappings: Mappings;
  /** header_checks: the primary message headers that are not MIME headers. */
  headerChecks: LookupTable[];
  /** mime_header_checks: MIME headers anywhere, and every header of a multipart part. */
  mimeHeaderChecks: LookupTable[];
  /** nested_header_checks: the non-MIME headers of an attached message/rfc822. */
  nestedHeaderChecks: LookupTable[];
  bodyChecks: LookupTable[];
  /** milter_header_checks: for the header fields milters added or changed. */
  milterHeaderChecks: LookupTable[];
  /** Some table maps header addresses (canonical or masquerading for a header class). */
  headerMapping: boolean;
}

/**
 * What cleanup reads, once per thread with the registry's types (the worker declares these; the
 * address mappings' and the milters' own sets are spread in, receive_override_options with the
 * milters').
 */
export const CLEANUP_PARAMS = {
  ...MAPPING_PARAMS,
  ...CLEANUP_MILTER_PARAMS,
  'myhostname': 'str',
  'mail_name': 'str',
  'hopcount_limit': 'int',
  'cleanup_replace_stray_cr_lf': 'bool',
  'always_add_missing_headers': 'bool',
  'append_at_myorigin': 'bool',
  'empty_address_recipient': 'str',
  'remote_header_rewrite_domain': 'str',
  // trivial-rewrite's, for the header addresses (Postfix's cleanup asks trivial-rewrite).
  'mydomain': 'str',
  'swap_bangpath': 'bool',
  'allow_percent_hack': 'bool',
  'append_dot_mydomain': 'bool',
  'header_size_limit': 'int',
  'body_checks_size_limit': 'int',
  'disable_mime_input_processing': 'bool',
  'mime_nesting_limit': 'int',
  'mime_boundary_length_limit': 'int',
  'smtputf8_enable': 'bool',
  'smtputf8_autodetect_classes': 'list',
  'config_directory': 'str',
  'header_checks': 'str',
  'body_checks': 'str',
  'mime_header_checks': 'str',
  'nested_header_checks': 'str',
  'milter_header_checks': 'str',
  'local_header_rewrite_clients': 'list',
  'mynetworks': 'str',
  'mynetworks_style': 'str',
} as const;
export type CleanupParams = Params<typeof CLEANUP_PARAMS>;

/**
 * The settings of main.cf's cleanup parameters, from the values the worker read (a test gives
 * only the configuration: they are read here then); warnings about them are logged here.
 */
export function cleanupSettings(config: Config, p: CleanupParams = readParams(config, CLEANUP_PARAMS, 'cleanup')): CleanupSettings {
  return {
    myhostname: p.myhostname,
    mailName: p.mail_name,
    hopLimit: p.hopcount_limit,
    replaceStrayCr: p.cleanup_replace_stray_cr_lf,

    alwaysAdd: p.always_add_missing_headers,
    rewriteClients: rewriteClientMatcher(p),
    myorigin: p.myorigin,
    appendAtMyorigin: p.append_at_myorigin,
    emptyAddressRecipient: p.empty_address_recipient,
    // Postfix >= 2.8: empty by default (no "To: undisclosed-recipients:;" is added).
    undisclosedRecipientsHeader: config.raw('undisclosed_recipients_header') ?? '',
    tables: loadTables(p),
    ...receiveOverrides(p),
    remoteHeaderRewriteDomain: p.remote_header_rewrite_domain.trim(),
    rewrite: {
      myorigin: p.myorigin.trim(), mydomain: p.mydomain.trim(), swapBangpath: p.swap_bangpath,
      allowPercentHack: p.allow_percent_hack, appendAtMyorigin: p.append_at_myorigin, appendDotMydomain: p.append_dot_mydomain,
    },
    headerSizeLimit: p.header_size_limit,
    bodyChecksSizeLimit: p.body_checks_size_limit,
    disableMime: p.disable_mime_input_processing,
    mimeLimits: { nesting: p.mime_nesting_limit, boundaryLength: p.mime_boundary_length_limit },
    smtputf8: smtputf8Settings(p.smtputf8_enable, p.smtputf8_autodetect_classes, (t) => log.warn(t)),
    milters: CleanupMilters.from(p, log),
  };
}

function loadTables(p: CleanupParams): Tables | { broken: string } {
  try {
    const dir = p.config_directory || undefined;
    const open = (name: 'header_checks' | 'body_checks' | 'mime_header_checks' | 'nested_header_checks' | 'milter_header_checks') => splitTableList(p[name]).map((spec) => openTable(spec, dir ? { configDirectory: dir } : {}));
    const mappings = loadMappings(p, dir);
    const headerClass = (maps: MapList, classes: ReadonlySet<string>) => !maps.empty && (classes.has('header_sender') || classes.has('header_recipient'));
    const headerMapping = headerClass(mappings.senderCanonical, mappings.senderCanonicalClasses)
      || headerClass(mappings.recipientCanonical, mappings.recipientCanonicalClasses)
      || headerClass(mappings.canonical, mappings.canonicalClasses)
      || (mappings.masqueradeDomains.length > 0 && (mappings.masqueradeClasses.has('header_sender') || mappings.masqueradeClasses.has('header_recipient')));
    return {
      mappings, headerChecks: open('header_checks'), bodyChecks: open('body_checks'),
      mimeHeaderChecks: open('mime_header_checks'), nestedHeaderChecks: open('nested_header_checks'),
      milterHeaderChecks: open('milter_header_checks'), headerMapping,
    };
  } catch (err) {
    log.warn(`cleanup tables: ${(err as Error).message}`);
    return { broken: (err as Error).message };
  }
}

/** receive_override_options: the options Postactor honours; others fail loudly (logged, not ignored silently). */
function receiveOverrides(p: CleanupParams): { noAddressMappings: boolean; noHeaderBodyChecks: boolean } {
  const opts = new Set(p.receive_override_options);
  for (const o of opts) {
    if (o !== 'no_address_mappings' && o !== 'no_header_body_checks' && o !== 'no_unknown_recipient_checks' && o !== 'no_milters') {
      log.warn(`receive_override_options: not supported: "${o}"`);
    }
  }
  return { noAddressMappings: opts.has('no_address_mappings'), noHeaderBodyChecks: opts.has('no_header_body_checks') };
}

/** local_header_rewrite_clients: permit_inet_interfaces, permit_mynetworks, permit (issue 3 adds tables). */
function rewriteClientMatcher(p: CleanupParams): (client: { addr: string; saslUsername?: string }) => boolean {
  const tests: ((addr: string, saslUsername: string | undefined) => boolean)[] = [];
  for (const item of p.local_header_rewrite_clients) {
    if (item === 'permit') tests.push(() => true);
    else if (item === 'permit_inet_interfaces') {
      const own: NetworkList = buildNetworks('', 'host').networks;
      tests.push((a) => own.has(a));
    } else if (item === 'permit_mynetworks') {
      const nets = buildNetworks(p.mynetworks, p.mynetworks_style).networks;
      tests.push((a) => nets.has(a));
    } else if (item === 'permit_sasl_authenticated') {
      tests.push((_a, user) => user !== undefined);
    } else {
      log.warn(`local_header_rewrite_clients: not supported: "${item}" (ignored)`);
    }
  }
  return (c) => tests.some((t) => t(c.addr, c.saslUsername));
}
