/**
 * What mailq and postqueue -p / -j read from the configuration: queue_directory,
 * empty_address_recipient, enable_long_queue_ids, and who may look (authorized_mailq_users,
 * mail_owner). Read the quick way (src/config/quick.ts:
 * main.cf only, no parameter registry) when that is sure to give what the full loader gives,
 * else by the full loader, whose errors end the command as they always did.
 */
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { quickConfig } from '../config/quick.js';
import type { ListingConfig } from './listing.js';

/** The project's root (this file is dist/src/queue/listing-config.js there), as config.ts's PROJECT_ROOT. */
const PROJECT_ROOT = fileURLToPath(new URL('../../../', import.meta.url));

/** Config.getBool's reading; null for what only the full loader may judge. */
function bool(value: string): boolean | null {
  const v = value.trim().toLowerCase();
  return v === 'yes' || v === 'true' ? true : v === 'no' || v === 'false' ? false : null;
}

export async function listingConfig(prog: string, dir: string | undefined): Promise<ListingConfig> {
  const q = quickConfig(dir, ['queue_directory', 'empty_address_recipient', 'enable_long_queue_ids', 'authorized_mailq_users', 'mail_owner']);
  if (q !== null) {
    const queue = q.values['queue_directory']!;
    const longIds = bool(q.values['enable_long_queue_ids']!);
    const empty = q.values['empty_address_recipient']!;
    if (queue !== '' && empty !== '' && longIds !== null) {
      return { queueDir: resolve(q.configDirectory ?? PROJECT_ROOT, queue), emptyAddress: empty, longIds, acl: q.values['authorized_mailq_users']!, mailOwner: q.values['mail_owner']! };
    }
  }
  const [{ commandConfig }, { queueDirectory }] = await Promise.all([import('./admin.js'), import('../config/index.js')]);
  const config = commandConfig(prog, dir);
  return {
    queueDir: queueDirectory(config),
    emptyAddress: config.get('empty_address_recipient') || 'MAILER-DAEMON',
    get longIds() { return config.getBool('enable_long_queue_ids'); },
    acl: config.get('authorized_mailq_users'),
    mailOwner: config.get('mail_owner'),
  };
}
