/**
 * The task of a pool's WARM_REQUEST (./pool.ts): nothing. piscina loads the pool's own module
 * when the thread starts, so running this one leaves a thread ready for the service's requests.
 */
export default function warm(): null {
  return null;
}
