/**
 * Which master.cf commands run the queue manager: qmgr (nqmgr's scheduler) or oqmgr. master
 * plans and starts the queue manager by it, and qmgr picks its scheduler by it.
 */

/** The master.cf commands that run the queue manager, each naming its scheduler. */
export const QUEUE_MANAGERS = ['qmgr', 'oqmgr'] as const;
export type SchedulerName = (typeof QUEUE_MANAGERS)[number];

export function isQueueManager(command: string): command is SchedulerName {
  return (QUEUE_MANAGERS as readonly string[]).includes(command);
}
