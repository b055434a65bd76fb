/**
 * What Postactor does with each of Postfix's parameters: the declarations that make every
 * setting honest.
 *
 *  - READERS: the parameters Postactor implements, by the service (actor) that reads each.
 *    test/params.test.ts checks that every name listed here is read somewhere in the code.
 *  - REFUSED: parameters Postactor does not implement whose absence weakens security or loses
 *    mail. Set to anything but their default, they stop `postactor check` and start-up with
 *    "main.cf:LINE: name = value: not supported by Postactor …".
 *  - Every other Postfix parameter is "not supported": set to anything but its default, it
 *    gets one warning "… not supported by Postactor, ignored", and nothing else happens.
 *  - DIFFERENCES: Postactor's defaults where they deliberately differ from Postfix's (listed
 *    in the README).
 *  - FIXED: parameters whose behaviour Postactor has built in one way only; setting that value
 *    is silent, another is treated by the rules above.
 *  - POSTACTOR_PARAMS: Postactor's own parameters, which Postfix does not have (type, default,
 *    readers). `postconf -d` lists them beside Postfix's; `postconf --support` marks them
 *    "own": true. Their names must not be Postfix's.
 *
 * How a parameter is put in REFUSED: it is refused when Postfix, given the setting, would
 * encrypt, authenticate, filter, limit or restrict something that Postactor would then let
 * through, or would deliver, keep or route mail that Postactor would then drop, bounce or send
 * elsewhere. Settings whose absence only changes logging, tuning, or features nobody is relying
 * on for safety are warned. As each issue implements a parameter, it moves from REFUSED (or the
 * warned rest) into READERS.
 */

import type { ParamType } from './postfix.js';

/** Postactor's services (actor folders) and shared parts, each with the parameters it reads. */
export const READERS: Readonly<Record<string, readonly string[]>> = {
  // Read by the configuration loader, master and every thread (identity, paths, logging).
  global: [
    'compatibility_level', 'config_directory', 'queue_directory', 'maillog_file', 'syslog_name',
    'syslog_facility',
    'mail_name', 'myhostname', 'mydomain', 'myorigin', 'mydestination', 'mynetworks',
    'mynetworks_style', 'recipient_delimiter', 'service_name', 'enable_long_queue_ids',
    'mail_owner', 'message_size_limit', 'in_flow_delay', 'proxy_interfaces',
    'relay_domains', 'virtual_alias_domains', 'virtual_mailbox_domains', 'virtual_alias_maps',
    'virtual_mailbox_maps', 'alias_database', 'empty_address_recipient', 'default_database_type',
    // Set-id commands only (src/config/locate.ts), as Postfix's postdrop/postqueue.
    'alternate_config_directories', 'multi_instance_directories',
    // The delivery agents, qmgr, cleanup, smtpd, postscreen, qmqpd, milters (src/delivery/soft-bounce.ts).
    'soft_bounce',
  ],
  // inet_interfaces, inet_protocols: where bare-port inet services listen (master/listen.ts).
  master: ['default_process_limit', 'service_throttle_time', 'max_idle', 'inet_interfaces', 'inet_protocols', 'proxy_read_maps', 'mail_spool_directory', 'anvil_rate_time_unit', 'anvil_status_update_time'],
  smtpd: [
    // reject_unverified_recipient / _sender (actors/smtpd/restrictions/verify.ts).
    'address_verify_poll_count', 'address_verify_poll_delay', 'address_verify_service_name',
    'address_verify_sender', 'address_verify_sender_ttl',
    'unverified_recipient_defer_code', 'unverified_recipient_reject_code',
    'unverified_recipient_tempfail_action', 'unverified_recipient_reject_reason',
    'unverified_sender_defer_code', 'unverified_sender_reject_code',
    'unverified_sender_tempfail_action', 'unverified_sender_reject_reason',
    'plaintext_reject_code', 'queue_minfree',
    'access_map_defer_code', 'access_map_reject_code', 'allow_untrusted_routing',
    'default_rbl_reply', 'defer_code', 'disable_vrfy_command', 'invalid_hostname_reject_code',
    'local_recipient_maps', 'maps_rbl_reject_code', 'non_fqdn_reject_code',
    'parent_domain_matches_subdomains', 'rbl_reply_maps', 'reject_code',
    'relay_domains_reject_code', 'relay_recipient_maps', 'smtpd_banner',
    'smtpd_client_restrictions', 'smtpd_data_restrictions', 'smtpd_delay_reject',
    'smtpd_discard_ehlo_keywords', 'smtpd_end_of_data_restrictions', 'smtpd_helo_restrictions',
    'smtpd_null_access_lookup_key', 'smtpd_peername_lookup', 'smtpd_policy_service_default_action',
    'smtpd_policy_service_policy_context', 'smtpd_policy_service_retry_delay',
    'smtpd_policy_service_timeout', 'smtpd_policy_service_try_limit', 'smtpd_recipient_limit',
    'smtpd_recipient_restrictions', 'smtpd_reject_unlisted_recipient', 'smtpd_relay_restrictions',
    'smtpd_restriction_classes', 'smtpd_sender_restrictions', 'smtpd_timeout', 'smtputf8_enable',
    'stress', 'unknown_address_reject_code', 'unknown_address_tempfail_action',
    'unknown_helo_hostname_tempfail_action', 'unknown_hostname_reject_code',
    'unknown_client_reject_code', 'multi_recipient_bounce_reject_code', 'permit_mx_backup_networks',
    'smtpd_reject_unlisted_sender', 'smtpd_recipient_overshoot_limit', 'smtpd_forbidden_commands',
    'maps_rbl_domains',
    'unknown_local_recipient_reject_code', 'unknown_relay_recipient_reject_code',
    'unknown_virtual_alias_reject_code', 'unknown_virtual_mailbox_reject_code',
    'content_filter',
    // TLS (actors/smtpd/tls.ts).
    'smtpd_tls_security_level', 'smtpd_use_tls', 'smtpd_enforce_tls', 'smtpd_tls_wrappermode',
    'smtpd_tls_cert_file', 'smtpd_tls_key_file', 'smtpd_tls_eccert_file', 'smtpd_tls_eckey_file',
    'smtpd_tls_chain_files', 'smtpd_tls_loglevel', 'smtpd_tls_received_header',
    'smtpd_starttls_timeout', 'smtpd_tls_protocols', 'smtpd_tls_mandatory_protocols',
    'smtpd_tls_ciphers', 'smtpd_tls_mandatory_ciphers', 'smtpd_tls_exclude_ciphers',
    'smtpd_tls_mandatory_exclude_ciphers', 'tls_high_cipherlist', 'tls_medium_cipherlist',
    'tls_null_cipherlist', 'tls_preempt_cipherlist', 'smtpd_tls_session_cache_timeout',
    // Client certificates (actors/smtpd/ccert.ts, restrictions/ccert.ts), SNI (sni.ts), and the
    // OpenSSL settings (src/tls/openssl-options.ts).
    'smtpd_tls_ask_ccert', 'smtpd_tls_req_ccert', 'smtpd_tls_CAfile', 'smtpd_tls_CApath',
    'smtpd_tls_ccert_verifydepth', 'smtpd_tls_fingerprint_digest', 'relay_clientcerts',
    'tls_server_sni_maps', 'tls_eecdh_auto_curves', 'tls_ffdhe_auto_groups', 'tls_ssl_options',
    'smtpd_tls_dh1024_param_file',
    // SASL AUTH with Dovecot (actors/smtpd/sasl.ts) and the sender-login restrictions.
    'smtpd_sasl_auth_enable', 'smtpd_sasl_type', 'smtpd_sasl_path', 'smtpd_sasl_service',
    'smtpd_sasl_security_options', 'smtpd_sasl_tls_security_options', 'smtpd_tls_auth_only',
    'broken_sasl_auth_clients', 'smtpd_sasl_exceptions_networks', 'smtpd_sasl_response_limit',
    'smtpd_sasl_mechanism_filter', 'smtpd_sasl_authenticated_header', 'smtpd_sasl_local_domain',
    'smtpd_sender_login_maps',
    // Error limits and request deadlines (actors/smtpd/limits.ts).
    'smtpd_soft_error_limit', 'smtpd_hard_error_limit', 'smtpd_junk_command_limit',
    'smtpd_error_sleep_time', 'smtpd_per_request_deadline', 'smtpd_min_data_rate',
    // Milters (actors/smtpd/milter.ts, src/milter/).
    'smtpd_milters', 'smtpd_milter_maps', 'milter_protocol', 'milter_default_action', 'milter_connect_timeout',
    'milter_command_timeout', 'milter_content_timeout', 'milter_connect_macros', 'milter_helo_macros',
    'milter_mail_macros', 'milter_rcpt_macros', 'milter_data_macros', 'milter_end_of_header_macros',
    'milter_end_of_data_macros', 'milter_macro_daemon_name', 'milter_macro_v', 'milter_macro_defaults',
    'milter_unknown_command_macros', 'receive_override_options',
    // The session budget (actors/smtpd/sessions.ts).
    'default_process_limit',
    // anvil's per-client limits (actors/smtpd/anvil.ts; counters in actors/anvil/table.ts).
    'smtpd_client_connection_count_limit', 'smtpd_client_connection_rate_limit',
    'smtpd_client_message_rate_limit', 'smtpd_client_recipient_rate_limit', 'smtpd_client_auth_rate_limit',
    'smtpd_client_new_tls_session_rate_limit',
    'smtpd_client_event_limit_exceptions', 'smtpd_client_connection_limit_exceptions',
    'smtpd_client_ipv4_prefix_length', 'smtpd_client_ipv6_prefix_length',
    'smtpd_upstream_proxy_protocol', 'smtpd_upstream_proxy_timeout',
    // XCLIENT and XFORWARD (actors/smtpd/xclient.ts, xforward.ts).
    'smtpd_authorized_xclient_hosts', 'smtpd_authorized_xforward_hosts',
    // Input hardening (actors/smtpd/bare-newline.ts, line-reader.ts, sessions.ts).
    'smtpd_forbid_bare_newline', 'smtpd_forbid_bare_newline_exclusions',
    'smtpd_forbid_bare_newline_reject_code', 'line_length_limit', 'smtpd_forbid_unauth_pipelining',
    'smtpd_helo_required', 'strict_rfc821_envelopes',
    // ETRN (actors/smtpd/etrn.ts): its restrictions, and the flush client (src/flush/client.ts).
    'smtpd_etrn_restrictions', 'fast_flush_domains', 'flush_service_name',
    // Reject footer and session transcripts to the postmaster (actors/smtpd/chat.ts).
    'smtpd_reject_footer', 'smtpd_reject_footer_maps', 'smtpd_expansion_filter',
    'smtpd_history_flush_threshold', 'notify_classes', 'error_notice_recipient',
    'bounce_notice_recipient', 'double_bounce_sender',
  ],
  // anvil's time unit and statistics, kept by master (actors/anvil/statistics.ts).
  anvil: ['anvil_rate_time_unit', 'anvil_status_update_time'],
  cleanup: [
    // non_smtpd_milters: actors/cleanup/milter.ts (local submissions through the milters).
    'non_smtpd_milters', 'milter_header_checks', 'milter_macro_defaults', 'inet_protocols',
    // MIME-aware checks (src/content/mime.ts).
    'mime_header_checks', 'nested_header_checks', 'disable_mime_input_processing',
    'mime_nesting_limit', 'mime_boundary_length_limit',
    'cleanup_replace_stray_cr_lf',
    'always_add_missing_headers', 'always_bcc', 'append_at_myorigin', 'body_checks',
    'body_checks_size_limit', 'canonical_classes', 'canonical_maps', 'duplicate_filter_limit',
    'header_checks', 'header_size_limit', 'hopcount_limit', 'local_header_rewrite_clients',
    // The original recipient: cleanup's duplicate filter, and X-Original-To in local, virtual, pipe.
    'enable_original_recipient',
    'masquerade_classes', 'masquerade_domains', 'masquerade_exceptions', 'owner_request_special',
    'propagate_unmatched_extensions', 'receive_override_options', 'recipient_bcc_maps',
    'recipient_canonical_classes', 'recipient_canonical_maps', 'remote_header_rewrite_domain',
    'sender_bcc_maps', 'sender_canonical_classes', 'sender_canonical_maps',
    'smtputf8_autodetect_classes', 'smtputf8_enable',
    'undisclosed_recipients_header', 'virtual_alias_expansion_limit', 'virtual_alias_recursion_limit',
    // Header addresses rewritten as trivial-rewrite does (actors/cleanup/settings.ts).
    'mydomain', 'swap_bangpath', 'allow_percent_hack', 'append_dot_mydomain',
  ],
  'trivial-rewrite': [
    'allow_percent_hack', 'append_at_myorigin', 'append_dot_mydomain', 'default_transport', 'local_transport',
    'relay_transport', 'relayhost', 'resolve_dequoted_address', 'show_user_unknown_table_name',
    'swap_bangpath', 'virtual_transport', 'transport_maps', 'relocated_maps', 'inet_interfaces',
    // Sender-dependent routing (actors/trivial-rewrite/resolve.ts; qmgr keys its cache on the sender).
    'sender_dependent_relayhost_maps', 'sender_dependent_default_transport_maps',
    'empty_address_relayhost_maps_lookup_key', 'empty_address_default_transport_maps_lookup_key',
    // Probes' routing (actors/trivial-rewrite/settings.ts VERIFY_OVERRIDES).
    'address_verify_relayhost', 'address_verify_transport_maps', 'address_verify_local_transport',
    'address_verify_virtual_transport', 'address_verify_relay_transport', 'address_verify_default_transport',
    'address_verify_sender_dependent_relayhost_maps', 'address_verify_sender_dependent_default_transport_maps',
  ],
  qmgr: [
    // Probe outcomes to the verify service (actors/qmgr/probes.ts).
    'address_verify_negative_cache', 'address_verify_service_name', 'address_verify_pending_request_limit',
    // Deferred recipients to the fast flush logs (actors/qmgr/fast-flush.ts).
    'fast_flush_domains', 'flush_service_name',
    '2bounce_notice_recipient', 'bounce_notice_recipient', 'bounce_queue_lifetime',
    'bounce_size_limit', 'bounce_template_file', 'confirm_delay_cleared', 'delay_notice_recipient',
    'delay_warning_time', 'destination_concurrency_feedback_debug', 'double_bounce_sender',
    'initial_destination_concurrency', 'maximal_backoff_time', 'maximal_queue_lifetime',
    'minimal_backoff_time', 'notify_classes', 'qmgr_message_active_limit',
    'qmgr_message_recipient_limit', 'qmgr_message_recipient_minimum', 'queue_run_delay',
    'transport_retry_time',
    // The active queue's share of the agents' processes (actors/qmgr/active.ts).
    'default_process_limit',
    // Per-transport parameters fall back to these (actors/qmgr, transportParam()).
    'default_destination_concurrency_limit', 'default_destination_recipient_limit',
    'default_destination_concurrency_failed_cohort_limit',
    'default_destination_concurrency_positive_feedback',
    'default_destination_concurrency_negative_feedback', 'default_destination_rate_delay',
    'default_transport_rate_delay', 'default_recipient_refill_limit',
    'default_recipient_refill_delay', 'default_delivery_slot_cost', 'default_delivery_slot_loan',
    'default_delivery_slot_discount', 'default_minimum_delivery_slots',
    'default_recipient_limit', 'default_extra_recipient_limit',
    // Read by oqmgr only (master.cf command oqmgr, actors/qmgr/strategy.ts), as in Postfix.
    'qmgr_fudge_factor',
  ],
  smtp: [
    'smtp_generic_maps',
    // Content checks on the way out (src/content/header-body-checks.ts; the lmtp_ names for lmtp).
    'smtp_header_checks', 'smtp_mime_header_checks', 'smtp_nested_header_checks', 'smtp_body_checks',
    'header_size_limit', 'mime_nesting_limit', 'mime_boundary_length_limit',
    // Outbound content lines longer than this are broken with CRLF SPACE (src/smtp/client.ts dotStuff).
    'smtp_line_length_limit',
    // SMTP AUTH to next hops (src/smtp/sasl-config.ts; the lmtp_ names for lmtp).
    'smtp_sasl_auth_enable', 'smtp_sasl_type', 'smtp_sasl_mechanism_filter', 'smtp_sasl_security_options',
    'smtp_sasl_tls_security_options', 'smtp_sasl_auth_soft_bounce', 'smtp_sender_dependent_authentication',
    'smtp_sasl_password_maps',
    'disable_dns_lookups', 'smtp_connect_timeout', 'smtp_connection_cache_time_limit',
    'smtp_connection_reuse_count_limit', 'smtp_connection_reuse_time_limit',
    'smtp_data_done_timeout', 'smtp_data_init_timeout', 'smtp_data_xfer_timeout',
    'smtp_helo_name', 'smtp_helo_timeout', 'smtp_host_lookup', 'smtp_mail_timeout',
    'smtp_quit_timeout', 'smtp_rcpt_timeout', 'smtp_skip_quit_response',
    'smtp_bind_address', 'smtp_bind_address6', 'smtp_bind_address_enforce', 'inet_interfaces', 'inet_protocols',
    // TLS (src/smtp/tls-policy.ts, tls.ts); minimal_backoff_time: the plaintext retry rule.
    'smtp_tls_security_level', 'smtp_use_tls', 'smtp_enforce_tls', 'smtp_tls_enforce_peername',
    'smtp_tls_policy_maps', 'smtp_tls_protocols', 'smtp_tls_mandatory_protocols', 'smtp_tls_ciphers',
    'smtp_tls_mandatory_ciphers', 'smtp_tls_exclude_ciphers', 'smtp_tls_mandatory_exclude_ciphers',
    'smtp_tls_verify_cert_match', 'smtp_tls_secure_cert_match', 'smtp_tls_fingerprint_cert_match',
    'smtp_tls_fingerprint_digest', 'smtp_tls_CAfile', 'smtp_tls_CApath', 'smtp_tls_cert_file',
    'smtp_tls_key_file', 'smtp_tls_loglevel', 'smtp_tls_note_starttls_offer', 'smtp_tls_wrappermode',
    'smtp_starttls_timeout', 'smtp_tls_servername', 'smtp_tls_connection_reuse',
    'smtp_tls_session_cache_database', 'smtp_tls_session_cache_timeout', 'minimal_backoff_time',
    'tls_eecdh_auto_curves', 'tls_ffdhe_auto_groups', 'tls_ssl_options',
    'smtp_send_xforward_command',
  ],
  lmtp: [
    'lmtp_header_checks', 'lmtp_mime_header_checks', 'lmtp_nested_header_checks', 'lmtp_body_checks',
    'lmtp_generic_maps', 'myorigin', 'mydestination', 'recipient_delimiter', 'proxy_interfaces',
    'header_size_limit', 'mime_nesting_limit', 'mime_boundary_length_limit',
    'lmtp_sasl_auth_enable', 'lmtp_sasl_type', 'lmtp_sasl_mechanism_filter', 'lmtp_sasl_security_options',
    'lmtp_sasl_tls_security_options', 'lmtp_sasl_auth_soft_bounce', 'lmtp_sender_dependent_authentication',
    'lmtp_sasl_password_maps',
    'lmtp_assume_final', 'lmtp_connect_timeout', 'lmtp_data_done_timeout',
    'lmtp_data_init_timeout', 'lmtp_data_xfer_timeout', 'lmtp_lhlo_name', 'lmtp_lhlo_timeout',
    'lmtp_mail_timeout', 'lmtp_quit_timeout', 'lmtp_rcpt_timeout', 'lmtp_skip_quit_response',
    'lmtp_bind_address', 'lmtp_bind_address6', 'lmtp_bind_address_enforce',
    'lmtp_tls_security_level', 'lmtp_use_tls', 'lmtp_enforce_tls', 'lmtp_tls_enforce_peername',
    'lmtp_tls_policy_maps', 'lmtp_tls_protocols', 'lmtp_tls_mandatory_protocols', 'lmtp_tls_ciphers',
    'lmtp_tls_mandatory_ciphers', 'lmtp_tls_exclude_ciphers', 'lmtp_tls_mandatory_exclude_ciphers',
    'lmtp_tls_verify_cert_match', 'lmtp_tls_secure_cert_match', 'lmtp_tls_fingerprint_cert_match',
    'lmtp_tls_fingerprint_digest', 'lmtp_tls_CAfile', 'lmtp_tls_CApath', 'lmtp_tls_cert_file',
    'lmtp_tls_key_file', 'lmtp_tls_loglevel', 'lmtp_tls_note_starttls_offer', 'lmtp_tls_wrappermode',
    'lmtp_starttls_timeout', 'lmtp_tls_servername', 'lmtp_tls_connection_reuse',
    'lmtp_tls_session_cache_database', 'lmtp_tls_session_cache_timeout', 'minimal_backoff_time',
    'lmtp_send_xforward_command',
    // The source address and the TLS library options, declared beside the shared client code.
    'inet_protocols', 'inet_interfaces', 'tls_eecdh_auto_curves', 'tls_ffdhe_auto_groups', 'tls_ssl_options',
  ],
  local: [
    'alias_maps', 'allow_mail_to_commands', 'allow_mail_to_files', 'command_time_limit', 'local_command_shell',
    'default_privs', 'deliver_lock_attempts', 'deliver_lock_delay', 'fallback_transport',
    'fallback_transport_maps', 'forward_path', 'home_mailbox', 'ipc_timeout', 'luser_relay',
    'mail_spool_directory', 'mailbox_command', 'mailbox_delivery_lock', 'mailbox_size_limit',
    'mailbox_transport', 'mailbox_transport_maps', 'stale_lock_time',
  ],
  virtual: [
    'strict_mailbox_ownership', 'virtual_gid_maps', 'virtual_mailbox_base',
    'virtual_mailbox_limit', 'virtual_mailbox_lock', 'virtual_minimum_uid', 'virtual_uid_maps',
    // The mailbox lock's retries (src/delivery/mailbox.ts LOCK_PARAMS).
    'deliver_lock_attempts', 'deliver_lock_delay', 'stale_lock_time',
  ],
  pipe: ['export_environment', 'command_time_limit'],
  spawn: ['export_environment', 'command_time_limit'],
  pickup: ['content_filter'],
  // The address verification service (actors/verify); its cache is the queue store's verify database.
  verify: [
    'address_verify_map', 'data_directory', 'address_verify_positive_expire_time',
    'address_verify_positive_refresh_time', 'address_verify_negative_expire_time',
    'address_verify_negative_refresh_time', 'address_verify_negative_cache',
    'address_verify_cache_cleanup_interval', 'address_verify_sender', 'address_verify_sender_ttl',
    'address_verify_service_name',
  ],
  // postscreen runs in the threads of its smtpd pass service (actors/postscreen).
  postscreen: [
    'postscreen_access_list', 'postscreen_denylist_action', 'postscreen_greet_banner',
    'postscreen_greet_wait', 'postscreen_greet_action', 'postscreen_greet_ttl',
    'postscreen_dnsbl_sites', 'postscreen_dnsbl_threshold', 'postscreen_dnsbl_allowlist_threshold',
    'postscreen_dnsbl_action', 'postscreen_dnsbl_min_ttl', 'postscreen_dnsbl_max_ttl',
    'postscreen_dnsbl_timeout', 'postscreen_dnsbl_reply_map', 'dnsblog_service_name',
    'postscreen_pipelining_enable', 'postscreen_pipelining_action', 'postscreen_pipelining_ttl',
    'postscreen_non_smtp_command_enable', 'postscreen_non_smtp_command_action', 'postscreen_non_smtp_command_ttl',
    'postscreen_bare_newline_enable', 'postscreen_bare_newline_action', 'postscreen_bare_newline_ttl',
    'postscreen_forbidden_commands', 'postscreen_command_count_limit', 'postscreen_command_time_limit',
    'postscreen_cache_map', 'postscreen_cache_retention_time', 'postscreen_cache_cleanup_interval',
    'postscreen_client_connection_count_limit', 'postscreen_pre_queue_limit', 'postscreen_helo_required', 'postscreen_disable_vrfy_command',
    'postscreen_upstream_proxy_protocol', 'postscreen_upstream_proxy_timeout', 'postscreen_allowlist_interfaces',
    'smtpd_service_name', 'respectful_logging', 'line_length_limit',
    // Postfix's old names, read through the defaults of their new names.
    'postscreen_blacklist_action', 'postscreen_dnsbl_whitelist_threshold', 'postscreen_dnsbl_ttl',
    'postscreen_whitelist_interfaces',
  ],
  dnsblog: ['dnsblog_reply_delay'],
  // The fast flush service (actors/flush); master asks it for postqueue -s and sendmail -qR.
  // sendmail, mailq and postqueue (src/system/user-acl.ts).
  commands: ['authorized_submit_users', 'authorized_mailq_users', 'authorized_flush_users'],
  flush: ['fast_flush_domains', 'fast_flush_refresh_time', 'fast_flush_purge_time', 'flush_service_name'],
  // postmulti(1): the instances, their names, groups and enable flags, and its command classes.
  postmulti: ['multi_instance_name', 'multi_instance_group', 'multi_instance_enable', 'multi_instance_wrapper', 'postmulti_start_commands', 'postmulti_stop_commands', 'postmulti_control_commands'],
  qmqpd: ['qmqpd_authorized_clients', 'qmqpd_timeout', 'qmqpd_error_delay', 'qmqpd_client_port_logging', 'line_length_limit', 'content_filter', 'parent_domain_matches_subdomains'],
};

/** Why a group of parameters is refused (printed with the refusal). */
const TLS = 'TLS is not built yet: mail would go in plaintext';

/** Refused parameters: name → why its absence weakens security or loses mail. */
export const REFUSED: Readonly<Record<string, string>> = {
  // TLS: anything that turns encryption on or requires it.
  // The obsolete per-site table (smtp_tls_policy_maps replaced it) is not read.
  smtp_tls_per_site: TLS, lmtp_tls_per_site: TLS,
  tlsproxy_enable_rpk: TLS,
  // Milters and other filters that would be skipped.
  // (smtpd_milters and smtpd_milter_maps are built: actors/smtpd/milter.ts; these are not yet.)
  smtpd_proxy_filter: 'the before-queue content filter would not run',
  // Abuse defences: per-client limits (anvil), error limits, deadlines.
  // Where mail goes and where it comes from.
};

/**
 * Values of implemented parameters that Postactor cannot honour: refused like a REFUSED
 * parameter ("main.cf:LINE: name = value: not supported by Postactor (why)…").
 */
const DANE = 'DANE needs DNSSEC-validated TLSA lookups, which Postactor\'s resolver (Node\'s) cannot make: mail would go without the DANE check';
export const REFUSED_VALUES: Readonly<Record<string, Readonly<Record<string, string>>>> = {
  smtp_tls_security_level: { dane: DANE, 'dane-only': DANE },
  lmtp_tls_security_level: { dane: DANE, 'dane-only': DANE },
};

/** Postactor's defaults that differ from Postfix 3.8's, with the reason (README lists them). */
export const DIFFERENCES: Readonly<Record<string, { value: string; why: string }>> = {
  compatibility_level: {
    value: '3.6',
    why: 'Postfix 3.8 defaults to 0 and then keeps pre-3.6 defaults with warnings; Postactor behaves as the current level (3.6) unless main.cf says otherwise',
  },
  mail_name: { value: 'Postactor', why: 'Postactor names itself in the banner and notices' },
  syslog_name: { value: '${multi_instance_name?{$multi_instance_name}:{postactor}}', why: 'log lines read "postactor/smtpd[…]" (a named instance\'s: "postfix-name/smtpd[…]", as Postfix\'s); set syslog_name = postfix for tools that insist' },
  enable_long_queue_ids: { value: 'yes', why: 'Postactor only makes long queue IDs' },
  queue_directory: { value: '/var/spool/postactor', why: 'never Postfix\'s queue' },
  data_directory: { value: '/var/lib/postactor', why: 'never Postfix\'s data' },
  config_directory: { value: '/etc/postactor', why: 'never Postfix\'s configuration' },
  mynetworks: { value: '', why: 'empty means "derive from mynetworks_style", computed when read' },
  maillog_file: { value: '', why: 'empty logs to syslog under `postactor start`, as Postfix does, but to standard output under `postactor start-fg`' },
  smtpd_forbid_bare_newline: { value: 'normalize', why: 'Postfix 3.9\'s default (SMTP smuggling defence); 3.8 has "no"' },
};

/**
 * Parameters whose behaviour is built in one way only: setting this value is silent. Others
 * fall under the REFUSED/warned rules.
 */
export const FIXED: Readonly<Record<string, string>> = {
  smtpd_delay_open_until_valid_rcpt: 'yes',
  enable_long_queue_ids: 'yes',
};

/**
 * List parameters whose items are words from a fixed set (Postfix's name masks): any other
 * word is an error at `check` and start-up, as Postfix stops on it.
 */
const SASL_OPTIONS = ['noplaintext', 'noactive', 'nodictionary', 'noanonymous', 'mutual_auth', 'forward_secrecy'];

export const WORDS: Readonly<Record<string, readonly string[]>> = {
  smtputf8_autodetect_classes: ['sendmail', 'smtpd', 'qmqpd', 'forward', 'bounce', 'notify', 'verify', 'all'],
  notify_classes: ['bounce', '2bounce', 'data', 'delay', 'policy', 'protocol', 'resource', 'software'],
  mynetworks_style: ['host', 'subnet', 'class'],
  smtpd_forbid_bare_newline: ['normalize', 'yes', 'note', 'reject', 'no'],
  canonical_classes: ['envelope_sender', 'envelope_recipient', 'header_sender', 'header_recipient'],
  sender_canonical_classes: ['envelope_sender', 'header_sender'],
  recipient_canonical_classes: ['envelope_recipient', 'header_recipient'],
  smtp_sasl_security_options: SASL_OPTIONS, smtp_sasl_tls_security_options: SASL_OPTIONS,
  lmtp_sasl_security_options: SASL_OPTIONS, lmtp_sasl_tls_security_options: SASL_OPTIONS,
  masquerade_classes: ['envelope_sender', 'envelope_recipient', 'header_sender', 'header_recipient'],
};

/** One of Postactor's own parameters: Postfix has no such name. */
export interface OwnParam {
  type: ParamType;
  default: string;
  /** Postactor services that read it (as in READERS). */
  readers: readonly string[];
  /** What it does, in one sentence (`postconf --support` prints it). */
  description: string;
}

/** Postactor's own parameters, each implemented by its readers. */
export const POSTACTOR_PARAMS: Readonly<Record<string, OwnParam>> = {
  smtp_tls_mta_sts: {
    type: 'bool',
    default: 'no',
    readers: ['smtp'],
    description: 'MTA-STS (RFC 8461): look up and enforce the next-hop domain\'s published policy on MX deliveries (Postfix needs an external policy server for this)',
  },
  metrics_listen: {
    type: 'str',
    default: '',
    readers: ['master'],
    description: 'Prometheus metrics (/metrics) and a health check (/health) over HTTP on [host:]port; empty: off; a bare port listens on 127.0.0.1 only',
  },
};
