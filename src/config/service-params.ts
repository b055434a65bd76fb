/**
 * Service-defined parameters (Postfix's postconf_service.c): names made of a master.cf service
 * name and a Postfix suffix, each defaulting to a built-in parameter ("$default_…").
 *
 *   delivery agents (local, error, virtual, smtp, lmtp, pipe; in Postactor also a JavaScript
 *   module agent): <service>_destination_concurrency_limit, _recipient_limit, … (the qmgr
 *   per-transport settings below);
 *   pipe and spawn: <service>_time_limit, default $command_time_limit
 *                   (e.g. policyd-spf_time_limit for a spawn service "policyd-spf").
 *
 * Other commands get none: Postfix's postconf calls `smtpd_time_limit` for a service "foo …
 * smtpd" an unused parameter, and so do we. The service name is the master.cf first column as
 * written (so "policyd-spf", with its hyphen, is a name as good as any).
 */

/** Suffix → the built-in parameter it defaults to (postconf_service.c's service_params). */
const DELIVERY_PARAMS: readonly (readonly [string, string])[] = [
  ['_recipient_limit', 'default_recipient_limit'],
  ['_extra_recipient_limit', 'default_extra_recipient_limit'],
  ['_recipient_refill_limit', 'default_recipient_refill_limit'],
  ['_recipient_refill_delay', 'default_recipient_refill_delay'],
  ['_delivery_slot_cost', 'default_delivery_slot_cost'],
  ['_delivery_slot_loan', 'default_delivery_slot_loan'],
  ['_delivery_slot_discount', 'default_delivery_slot_discount'],
  ['_minimum_delivery_slots', 'default_minimum_delivery_slots'],
  ['_initial_destination_concurrency', 'initial_destination_concurrency'],
  ['_destination_concurrency_limit', 'default_destination_concurrency_limit'],
  ['_destination_recipient_limit', 'default_destination_recipient_limit'],
  ['_destination_concurrency_positive_feedback', 'default_destination_concurrency_positive_feedback'],
  ['_destination_concurrency_negative_feedback', 'default_destination_concurrency_negative_feedback'],
  ['_destination_concurrency_failed_cohort_limit', 'default_destination_concurrency_failed_cohort_limit'],
  ['_destination_rate_delay', 'default_destination_rate_delay'],
  ['_transport_rate_delay', 'default_transport_rate_delay'],
];

const TIME_LIMIT: readonly [string, string] = ['_time_limit', 'command_time_limit'];

/** Which suffixes a master.cf command gets. */
function paramsOf(command: string): readonly (readonly [string, string])[] {
  switch (command) {
    case 'local': case 'error': case 'virtual': case 'smtp': case 'lmtp':
      return DELIVERY_PARAMS;
    case 'pipe':
      return [TIME_LIMIT, ...DELIVERY_PARAMS];
    case 'spawn':
      return [TIME_LIMIT];
    default:
      // A delivery agent given as a JavaScript module path (Postactor's own extension).
      return command.startsWith('/') && /\.m?js$/.test(command) ? DELIVERY_PARAMS : [];
  }
}

/** The part of a master.cf service this needs. */
export interface ServiceNameAndCommand {
  readonly name: string;
  readonly command: string;
}

/**
 * Every service-defined parameter of these master.cf services → its default value
 * ("$default_destination_concurrency_limit", "$command_time_limit"), as postconf -d lists them.
 */
export function serviceParameterNames(services: readonly ServiceNameAndCommand[]): Map<string, string> {
  const out = new Map<string, string>();
  for (const s of services) {
    for (const [suffix, fallback] of paramsOf(s.command)) out.set(`${s.name}${suffix}`, `$${fallback}`);
  }
  return out;
}

/** Whether name is a service-defined parameter of one of these services. */
export function isServiceParameter(name: string, services: readonly ServiceNameAndCommand[]): boolean {
  for (const s of services) {
    if (!name.startsWith(s.name) || name.length <= s.name.length) continue;
    const suffix = name.slice(s.name.length);
    if (paramsOf(s.command).some(([x]) => x === suffix)) return true;
  }
  return false;
}
