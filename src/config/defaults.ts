// Built-in parameter defaults under Postfix's names, with the values Postfix
// 3.7/3.8 ships (`postconf -d`). Where Postfix's default is a compatibility-
// level expression such as ${{$compatibility_level} <level {2} ? ...}, the
// value it yields at the current compatibility level is stored instead.
// Also: the default unit of every time parameter, and the per-transport
// parameter names (<transport>_destination_concurrency_limit etc.).

import os from 'node:os';

export type TimeUnit = 's' | 'm' | 'h' | 'd' | 'w';

/** Postfix's myhostname default: the system hostname, made fully qualified. */
export function defaultHostname(): string {
  const h = os.hostname() || 'localhost';
  return h.includes('.') ? h : `${h}.localdomain`;
}

/** Postfix's mydomain default: myhostname minus its first label. */
export function domainOf(hostname: string): string {
  const dot = hostname.indexOf('.');
  return dot < 0 || dot === hostname.length - 1 ? 'localdomain' : hostname.slice(dot + 1);
}

const HOST = defaultHostname();

export const DEFAULTS: Readonly<Record<string, string>> = Object.freeze({
  // --- identity and addressing
  myhostname: HOST,
  mydomain: domainOf(HOST), // config.ts recomputes this from a configured myhostname
  myorigin: '$myhostname',
  mydestination: '$myhostname, localhost.$mydomain, localhost',
  inet_interfaces: 'all',
  inet_protocols: 'all',
  mynetworks: '', // empty: the caller derives it from mynetworks_style
  mynetworks_style: 'host',
  relay_domains: '', // Postfix >= 3.0 (compatibility_level >= 2)
  relayhost: '',
  // Postfix ships mail_name = Postfix; Postactor deliberately names itself.
  mail_name: 'Postactor',
  compatibility_level: '0', // any value is accepted
  recipient_delimiter: '',
  append_at_myorigin: 'yes',
  append_dot_mydomain: 'no', // Postfix >= 3.0
  swap_bangpath: 'yes',
  allow_percent_hack: 'yes',
  resolve_dequoted_address: 'yes',
  allow_untrusted_routing: 'no',
  proxy_interfaces: '',
  relocated_maps: '',
  show_user_unknown_table_name: 'yes',
  empty_address_recipient: 'MAILER-DAEMON',
  always_add_missing_headers: 'no',
  local_header_rewrite_clients: 'permit_inet_interfaces',
  hopcount_limit: '50',
  header_size_limit: '102400',
  smtputf8_enable: 'yes',
  // Postfix: default_database_type = hash, alias_maps = hash:/etc/aliases, nis:mail.aliases,
  // alias_database = hash:/etc/aliases. Postactor builds only lmdb: tables (postmap), so its
  // defaults name lmdb; NIS is not supported.
  default_database_type: 'lmdb',
  alias_maps: '$default_database_type:/etc/aliases',
  alias_database: '$default_database_type:/etc/aliases',
  local_recipient_maps: 'proxy:unix:passwd.byname $alias_maps',
  canonical_maps: '',
  sender_canonical_maps: '',
  recipient_canonical_maps: '',
  masquerade_domains: '',
  virtual_maps: '',
  virtual_alias_maps: '$virtual_maps',
  virtual_alias_domains: '$virtual_alias_maps',
  virtual_mailbox_maps: '',
  virtual_mailbox_domains: '$virtual_mailbox_maps',
  relay_recipient_maps: '',
  header_checks: '',
  content_filter: '',
  body_checks: '',
  // cleanup: address mappings and content checks (cleanup(8))
  canonical_classes: 'envelope_sender, envelope_recipient, header_sender, header_recipient',
  sender_canonical_classes: 'envelope_sender, header_sender',
  recipient_canonical_classes: 'envelope_recipient, header_recipient',
  masquerade_classes: 'envelope_sender, header_sender, header_recipient',
  masquerade_exceptions: '',
  propagate_unmatched_extensions: 'canonical, virtual',
  owner_request_special: 'yes',
  always_bcc: '',
  sender_bcc_maps: '',
  recipient_bcc_maps: '',
  virtual_alias_recursion_limit: '1000',
  virtual_alias_expansion_limit: '1000',
  duplicate_filter_limit: '1000',
  receive_override_options: '',
  remote_header_rewrite_domain: '',
  body_checks_size_limit: '51200',
  // Postfix's default is no; Postactor only makes long queue IDs (src/queue/qid.ts), so the
  // listings (mailq) use the long layout.
  enable_long_queue_ids: 'yes',
  // Postfix: ${multi_instance_name?{$multi_instance_name}:{postfix}}. Postactor logs as itself
  // ("postactor/smtpd[pid]: …"); set syslog_name = postfix for tools that match on it.
  syslog_name: 'postactor',
  multi_instance_name: '',
  // Read-only in Postfix: each daemon sets these for itself at run time.
  process_name: '',
  process_id: '',
  service_name: '',

  // --- directories and ownership
  config_directory: '/etc/postfix', // config.ts uses the -c directory when one is given
  command_directory: '/usr/sbin',
  daemon_directory: '/usr/libexec/postfix',
  queue_directory: '/var/spool/postfix', // the embedded main.cf overrides this
  data_directory: '/var/lib/postfix',
  mail_spool_directory: '/var/mail',
  // local(8)
  home_mailbox: '',
  mailbox_delivery_lock: 'fcntl, dotlock',
  deliver_lock_attempts: '20',
  deliver_lock_delay: '1s',
  stale_lock_time: '500s',
  allow_mail_to_commands: 'alias, forward',
  allow_mail_to_files: 'alias, forward',
  forward_path: '$home/.forward${recipient_delimiter}${extension}, $home/.forward',
  luser_relay: '',
  mailbox_command: '',
  mailbox_transport: '',
  mailbox_transport_maps: '',
  fallback_transport: '',
  fallback_transport_maps: '',
  mailbox_size_limit: '51200000',
  strict_mailbox_ownership: 'yes',
  // virtual(8)
  virtual_mailbox_base: '',
  virtual_uid_maps: '',
  virtual_gid_maps: '',
  virtual_minimum_uid: '100',
  virtual_mailbox_limit: '51200000',
  virtual_mailbox_lock: 'fcntl, dotlock',
  default_privs: 'nobody',
  mail_owner: 'postfix',
  setgid_group: 'postdrop',
  // Postfix: empty = log to syslog. Postactor: empty = log to standard output.
  maillog_file: '',

  // --- smtpd
  smtpd_banner: '$myhostname ESMTP $mail_name',
  message_size_limit: '10240000',
  smtpd_discard_ehlo_keywords: '',
  smtpd_recipient_limit: '1000',
  smtpd_relay_restrictions: 'permit_mynetworks, permit_sasl_authenticated, defer_unauth_destination',
  smtpd_recipient_restrictions: '',
  smtpd_client_restrictions: '',
  smtpd_helo_restrictions: '',
  smtpd_sender_restrictions: '',
  smtpd_data_restrictions: '',
  smtpd_end_of_data_restrictions: '',
  smtpd_delay_reject: 'yes',
  smtpd_delay_open_until_valid_rcpt: 'yes',
  smtpd_helo_required: 'no',
  disable_vrfy_command: 'no',
  smtpd_timeout: '300s', // Postfix: ${stress?{10}:{300}}s
  smtpd_soft_error_limit: '10',
  smtpd_hard_error_limit: '20', // Postfix: ${stress?1}${stress:20}
  smtpd_peername_lookup: 'yes',
  reject_code: '554',
  defer_code: '450',
  relay_domains_reject_code: '554',
  unknown_address_reject_code: '450',
  smtpd_client_connection_count_limit: '50',
  smtpd_sasl_auth_enable: 'no',
  smtpd_tls_security_level: '',
  smtpd_reject_footer: '',
  // smtpd access policy (actors/smtpd/policy.ts, restrictions/)
  smtpd_restriction_classes: '',
  smtpd_reject_unlisted_recipient: 'yes',
  smtpd_reject_unlisted_sender: 'no',
  smtpd_null_access_lookup_key: '<>',
  parent_domain_matches_subdomains: 'debug_peer_list,fast_flush_domains,mynetworks,permit_mx_backup_networks,qmqpd_authorized_clients,relay_domains,smtpd_access_maps',
  access_map_reject_code: '554',
  access_map_defer_code: '450',
  invalid_hostname_reject_code: '501',
  non_fqdn_reject_code: '504',
  unknown_hostname_reject_code: '450',
  unknown_local_recipient_reject_code: '550',
  unknown_virtual_alias_reject_code: '550',
  unknown_virtual_mailbox_reject_code: '550',
  unknown_relay_recipient_reject_code: '550',
  reject_tempfail_action: 'defer_if_permit',
  unknown_address_tempfail_action: '$reject_tempfail_action',
  unknown_helo_hostname_tempfail_action: '$reject_tempfail_action',
  maps_rbl_reject_code: '554',
  rbl_reply_maps: '',
  smtpd_policy_service_timeout: '100s',
  smtpd_policy_service_default_action: '451 4.3.5 Server configuration problem',
  smtpd_policy_service_try_limit: '2',
  smtpd_policy_service_retry_delay: '1s',
  smtpd_policy_service_policy_context: '',
  stress: '', // set to "yes" by master for overloaded services (-o stress=yes)

  // --- smtp client
  smtp_connect_timeout: '30s',
  smtp_helo_timeout: '300s',
  smtp_mail_timeout: '300s',
  smtp_rcpt_timeout: '300s',
  smtp_data_init_timeout: '120s',
  smtp_data_xfer_timeout: '180s',
  smtp_data_done_timeout: '600s',
  smtp_quit_timeout: '300s',
  smtp_connection_cache_time_limit: '2s',
  smtp_connection_reuse_count_limit: '0',
  smtp_connection_reuse_time_limit: '300s',
  smtp_helo_name: '$myhostname',
  smtp_host_lookup: 'dns',
  smtp_bind_address: '',
  smtp_bind_address6: '',
  smtp_bind_address_enforce: 'no',
  smtp_skip_5xx_greeting: 'yes',
  smtp_tls_security_level: '',

  // --- lmtp client (the smtp client in LMTP mode; 0s connect timeout = no limit)
  lmtp_connect_timeout: '0s',
  lmtp_bind_address: '',
  lmtp_bind_address6: '',
  lmtp_bind_address_enforce: 'no',
  lmtp_lhlo_timeout: '300s',
  lmtp_mail_timeout: '300s',
  lmtp_rcpt_timeout: '300s',
  lmtp_data_init_timeout: '120s',
  lmtp_data_xfer_timeout: '180s',
  lmtp_data_done_timeout: '600s',
  lmtp_quit_timeout: '300s',
  lmtp_lhlo_name: '$myhostname',
  lmtp_assume_final: 'no',
  // pipe(8): what a command's environment keeps from ours
  export_environment: 'TZ MAIL_CONFIG LANG',
  disable_dns_lookups: 'no',

  // --- routing
  default_transport: 'smtp',
  relay_transport: 'relay',
  local_transport: 'local:$myhostname',
  virtual_transport: 'virtual',
  transport_maps: '',

  // --- queue manager and scheduling
  default_destination_concurrency_limit: '20',
  default_destination_recipient_limit: '50',
  initial_destination_concurrency: '5',
  local_destination_concurrency_limit: '2',
  local_destination_recipient_limit: '1',
  default_destination_concurrency_failed_cohort_limit: '1',
  default_destination_concurrency_positive_feedback: '1',
  default_destination_concurrency_negative_feedback: '1',
  default_destination_rate_delay: '0s',
  default_transport_rate_delay: '0s',
  destination_concurrency_feedback_debug: 'no',
  default_recipient_limit: '20000',
  default_extra_recipient_limit: '1000',
  default_recipient_refill_limit: '100',
  default_recipient_refill_delay: '5s',
  default_delivery_slot_cost: '5',
  default_delivery_slot_loan: '3',
  default_delivery_slot_discount: '50',
  default_minimum_delivery_slots: '3',
  qmgr_message_active_limit: '20000',
  qmgr_message_recipient_limit: '20000',
  qmgr_message_recipient_minimum: '10',
  qmgr_clog_warn_time: '300s',
  minimal_backoff_time: '300s',
  maximal_backoff_time: '4000s',
  queue_run_delay: '300s',
  maximal_queue_lifetime: '5d',
  bounce_queue_lifetime: '5d',
  delay_warning_time: '0h',
  transport_retry_time: '60s',
  in_flow_delay: '1s',
  command_time_limit: '1000s',

  // --- bounces and notices
  bounce_size_limit: '50000',
  bounce_template_file: '',
  confirm_delay_cleared: 'no',
  double_bounce_sender: 'double-bounce',
  notify_classes: 'resource, software',
  '2bounce_notice_recipient': 'postmaster',
  bounce_notice_recipient: 'postmaster',
  delay_notice_recipient: 'postmaster',
  error_notice_recipient: 'postmaster',

  // --- master and process management
  default_process_limit: '100',
  max_use: '100',
  max_idle: '100s',
  service_throttle_time: '60s',
  fork_attempts: '5',
  fork_delay: '1s',
  daemon_timeout: '18000s',
  ipc_timeout: '3600s',
  ipc_idle: '5s',
  ipc_ttl: '1000s',
});

/** Default unit of each time parameter (a bare number is in this unit). */
export const TIME_UNITS: Readonly<Record<string, TimeUnit>> = Object.freeze({
  smtpd_timeout: 's',
  smtp_connect_timeout: 's',
  smtp_helo_timeout: 's',
  smtp_mail_timeout: 's',
  smtp_rcpt_timeout: 's',
  smtp_data_init_timeout: 's',
  smtp_data_xfer_timeout: 's',
  smtp_data_done_timeout: 's',
  smtp_quit_timeout: 's',
  smtp_connection_cache_time_limit: 's',
  smtp_connection_reuse_time_limit: 's',
  minimal_backoff_time: 's',
  maximal_backoff_time: 's',
  queue_run_delay: 's',
  maximal_queue_lifetime: 'd',
  bounce_queue_lifetime: 'd',
  delay_warning_time: 'h',
  transport_retry_time: 's',
  qmgr_clog_warn_time: 's',
  in_flow_delay: 's',
  smtpd_policy_service_timeout: 's',
  smtpd_policy_service_retry_delay: 's',
  command_time_limit: 's',
  lmtp_connect_timeout: 's',
  lmtp_lhlo_timeout: 's',
  lmtp_mail_timeout: 's',
  lmtp_rcpt_timeout: 's',
  lmtp_data_init_timeout: 's',
  lmtp_data_xfer_timeout: 's',
  lmtp_data_done_timeout: 's',
  lmtp_quit_timeout: 's',
  default_destination_rate_delay: 's',
  default_transport_rate_delay: 's',
  default_recipient_refill_delay: 's',
  max_idle: 's',
  service_throttle_time: 's',
  fork_delay: 's',
  daemon_timeout: 's',
  ipc_timeout: 's',
  ipc_idle: 's',
  ipc_ttl: 's',
});

/**
 * Per-transport parameter suffixes: <transport>_<suffix> falls back to
 * default_<suffix>, except initial_destination_concurrency (no default_ prefix).
 */
export const TRANSPORT_SUFFIXES: readonly string[] = Object.freeze([
  'destination_concurrency_failed_cohort_limit',
  'destination_concurrency_positive_feedback',
  'destination_concurrency_negative_feedback',
  'destination_concurrency_limit',
  'destination_recipient_limit',
  'initial_destination_concurrency',
  'destination_rate_delay',
  'transport_rate_delay',
  'extra_recipient_limit',
  'recipient_refill_limit',
  'recipient_refill_delay',
  'recipient_limit',
  'delivery_slot_cost',
  'delivery_slot_loan',
  'delivery_slot_discount',
  'minimum_delivery_slots',
].sort((a, b) => b.length - a.length)); // longest first: "recipient_limit" must not shadow the others

/** Name of the parameter a per-transport suffix falls back to. */
export function transportDefaultName(suffix: string): string {
  return suffix === 'initial_destination_concurrency' ? suffix : `default_${suffix}`;
}

/**
 * For a name like "smtp_destination_concurrency_limit": the transport and the
 * fallback parameter name; null when the name is not a per-transport name.
 */
export function splitTransportParam(name: string): { transport: string; suffix: string; fallback: string } | null {
  for (const suffix of TRANSPORT_SUFFIXES) {
    if (name.length > suffix.length + 1 && name.endsWith('_' + suffix)) {
      const transport = name.slice(0, name.length - suffix.length - 1);
      if (transport === 'default') return null;
      return { transport, suffix, fallback: transportDefaultName(suffix) };
    }
  }
  return null;
}
