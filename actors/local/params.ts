/**
 * What local reads, once per thread with the registry's types (index.ts declares LOCAL_PARAMS):
 * alias expansion's and the delegations' sets, and the rest of local(8)'s. A module of its own,
 * without imports, because aliases.ts and index.ts import each other.
 */

/** What alias expansion and the special deliveries read (aliases.ts). */
export const ALIAS_PARAMS = {
  'alias_maps': 'list',
  'mydestination': 'list',
  'allow_mail_to_commands': 'list',
  'allow_mail_to_files': 'list',
  'myorigin': 'str',
  'default_privs': 'str',
  'command_time_limit': 'time',
  'local_command_shell': 'str',
} as const;

/** What the delegations to another transport read (delegate.ts). */
export const DELEGATION_PARAMS = {
  'mailbox_transport': 'str',
  'mailbox_transport_maps': 'list',
  'fallback_transport': 'str',
  'fallback_transport_maps': 'list',
  'ipc_timeout': 'time',
} as const;

/**
 * forward_path, mailbox_command and luser_relay are read raw: their $names are local(8)'s own
 * attributes ($home, $user, $EXTENSION for the shell), not main.cf parameters.
 */
export const LOCAL_PARAMS = {
  ...ALIAS_PARAMS,
  ...DELEGATION_PARAMS,
  'enable_original_recipient': 'bool',
  'mailbox_delivery_lock': 'list',
  'deliver_lock_attempts': 'int',
  'deliver_lock_delay': 'time',
  'stale_lock_time': 'time',
  'mail_spool_directory': 'str',
  'home_mailbox': 'str',
  'mailbox_size_limit': 'int',
  'recipient_delimiter': 'str',
  'forward_path': 'raw',
  'mailbox_command': 'raw',
  'luser_relay': 'raw',
  'mail_owner': 'str',
} as const;
