/**
 * postscreen's parameters (Postfix's postscreen.c main(): the var_psc_* table and the action
 * names), read once per thread from main.cf plus the postscreen line's -o overrides. A bad
 * value is a configuration problem that stops `postactor check` and start-up, as Postfix's
 * postscreen dies with "fatal: bad ... value" at start.
 */
import { parseForbiddenCommands, type ForbiddenCommands } from '../smtpd/forbidden.js';
import type { Config } from '../config/index.js';
import { parseDnsblSites, type DnsblSite } from './dnsbl.js';
import { parseAccessList, type AccessList } from './access.js';
import { NetworkList } from '../net/networks.js';

/** What a failed test leads to (postscreen.c's action names). */
export type Action = 'ignore' | 'enforce' | 'drop';

export interface DeepTest { enable: boolean; action: Action; ttl: number }

export interface PostscreenSettings {
  hostname: string;
  /** smtpd_banner, for the 220 of the built-in SMTP engine (deep tests). */
  smtpdBanner: string;
  /** postscreen_greet_banner: the "220-" teaser; empty disables the pregreet test. */
  greetBanner: string;
  greetWait: number;
  greetAction: Action;
  greetTtl: number;
  dnsblSites: DnsblSite[];
  dnsblThreshold: number;
  dnsblAllowlistThreshold: number;
  dnsblAction: Action;
  dnsblMinTtl: number;
  dnsblMaxTtl: number;
  dnsblTimeout: number;
  dnsblReplyMap: string;
  dnsblogService: string;
  pipelining: DeepTest;
  nonSmtp: DeepTest;
  bareNewline: DeepTest;
  forbiddenCommands: ForbiddenCommands;
  commandCountLimit: number;
  commandTimeLimit: number;
  /** postscreen_cache_map is set (its entries live in the queue store: cache.ts). */
  cache: boolean;
  cacheRetention: number;
  cacheCleanupInterval: number;
  connectionLimit: number;
  preQueueLimit: number;
  access: AccessList;
  denylistAction: Action;
  /** respectful_logging: ALLOWLISTED/DENYLISTED (yes) or WHITELISTED/BLACKLISTED (no). */
  respectful: boolean;
  heloRequired: boolean;
  vrfyDisabled: boolean;
  sizeLimit: number;
  smtputf8: boolean;
  lineLengthLimit: number;
  /** postscreen_allowlist_interfaces: whether a client that connected to this server address may pass. */
  allowlistInterfaces: (serverAddr: string) => boolean;
  upstreamProxy: '' | 'haproxy';
  upstreamProxyTimeout: number;
  /** soft_bounce: replies and the reject log line say 4 where they would say 5 (state.ts). */
  softBounce: boolean;
}

/**
 * postscreen_dnsbl_max_ttl. Its default appends "h" to the legacy postscreen_dnsbl_ttl
 * ("1h" → "1hh"), which Postfix's conv_time accepts because it reads only the first unit
 * letter; so does this.
 */
function maxTtl(config: Config): number {
  const v = config.get('postscreen_dnsbl_max_ttl').trim();
  const m = /^(\d+)([wdhms]?)/.exec(v);
  if (!m || (m[2] === '' && v !== m[1])) throw new Error(`bad time parameter value: postscreen_dnsbl_max_ttl = ${v}`);
  const units: Record<string, number> = { w: 604800, d: 86400, h: 3600, m: 60, s: 1 };
  const unit = units[m[2] || 'h']!;
  return Number(m[1]) * unit;
}

/** postscreen_allowlist_interfaces: "static:all" or addresses and networks (first match wins, "!" negates). */
function allowlistInterfaces(value: string): (addr: string) => boolean {
  const items = value.split(/[\s,]+/).filter(Boolean).map((item) => {
    if (item.toLowerCase() === 'static:all') return { not: false, all: true, nets: null };
    const not = item.startsWith('!');
    const nets = new NetworkList();
    const err = nets.add(not ? item.slice(1) : item);
    if (err) throw new Error(`postscreen_allowlist_interfaces: ${err}`);
    return { not, all: false, nets };
  });
  return (addr) => {
    for (const i of items) if (i.all || i.nets!.has(addr)) return !i.not;
    return false;
  };
}

function action(config: Config, name: string): Action {
  const v = config.get(name).trim().toLowerCase();
  if (v === 'ignore' || v === 'enforce' || v === 'drop') return v;
  throw new Error(`bad ${name} value: ${config.get(name)}`);
}

/** postscreen's settings; throws the first problem as Postfix's fatal text. */
export function postscreenSettings(config: Config): PostscreenSettings {
  const proxy = config.get('postscreen_upstream_proxy_protocol').trim().toLowerCase();
  if (proxy !== '' && proxy !== 'haproxy') throw new Error(`unsupported postscreen_upstream_proxy_protocol protocol type: ${proxy}`);
  const forbidden = parseForbiddenCommands(config.get('postscreen_forbidden_commands'));
  return {
    hostname: config.get('myhostname'),
    smtpdBanner: config.get('smtpd_banner'),
    greetBanner: config.get('postscreen_greet_banner'),
    greetWait: config.getTime('postscreen_greet_wait'),
    greetAction: action(config, 'postscreen_greet_action'),
    greetTtl: config.getTime('postscreen_greet_ttl'),
    dnsblSites: parseDnsblSites(config.get('postscreen_dnsbl_sites')),
    dnsblThreshold: config.getInt('postscreen_dnsbl_threshold'),
    dnsblAllowlistThreshold: config.getInt('postscreen_dnsbl_allowlist_threshold'),
    dnsblAction: action(config, 'postscreen_dnsbl_action'),
    dnsblMinTtl: config.getTime('postscreen_dnsbl_min_ttl'),
    dnsblMaxTtl: maxTtl(config),
    dnsblTimeout: config.getTime('postscreen_dnsbl_timeout'),
    dnsblReplyMap: config.get('postscreen_dnsbl_reply_map').trim(),
    dnsblogService: config.get('dnsblog_service_name'),
    pipelining: { enable: config.getBool('postscreen_pipelining_enable'), action: action(config, 'postscreen_pipelining_action'), ttl: config.getTime('postscreen_pipelining_ttl') },
    nonSmtp: { enable: config.getBool('postscreen_non_smtp_command_enable'), action: action(config, 'postscreen_non_smtp_command_action'), ttl: config.getTime('postscreen_non_smtp_command_ttl') },
    bareNewline: { enable: config.getBool('postscreen_bare_newline_enable'), action: action(config, 'postscreen_bare_newline_action'), ttl: config.getTime('postscreen_bare_newline_ttl') },
    forbiddenCommands: forbidden,
    commandCountLimit: config.getInt('postscreen_command_count_limit'),
    commandTimeLimit: config.getTime('postscreen_command_time_limit'),
    cache: config.get('postscreen_cache_map').trim() !== '',
    cacheRetention: config.getTime('postscreen_cache_retention_time'),
    cacheCleanupInterval: config.getTime('postscreen_cache_cleanup_interval'),
    connectionLimit: config.getInt('postscreen_client_connection_count_limit'),
    preQueueLimit: config.getInt('postscreen_pre_queue_limit'),
    access: parseAccessList(config),
    denylistAction: action(config, 'postscreen_denylist_action'),
    respectful: config.getBool('respectful_logging'),
    heloRequired: config.getBool('postscreen_helo_required'),
    vrfyDisabled: config.getBool('postscreen_disable_vrfy_command'),
    sizeLimit: config.getSize('message_size_limit'),
    smtputf8: config.getBool('smtputf8_enable'),
    lineLengthLimit: config.getInt('line_length_limit'),
    allowlistInterfaces: allowlistInterfaces(config.get('postscreen_allowlist_interfaces')),
    upstreamProxy: proxy,
    upstreamProxyTimeout: config.getTime('postscreen_upstream_proxy_timeout'),
    softBounce: config.getBool('soft_bounce'),
  };
}
