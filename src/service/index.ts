// The service's public surface: what transports and the composition root import.
export { ApmatrixService, type ApmatrixServiceOptions } from './apmatrix-service.js'
export { MAX_LABELS } from './mdev-input.js'
export { PLAN_VIEWS } from './plan-summary.js'
export { MAX_MASK_IDS, MAX_MASK_TEXT } from './admission.js'
export {
  BOOKMARK_TYPE,
  MAX_BOOKMARK_SECONDS,
  MAX_WATCH_NAMES,
  WATCH_FORMATS,
  type Watch,
  type WatchedEvent,
  type WatchFormat,
  type WatchInput,
} from './event-watch.js'
// How a watch ends: transports map these to their status (and end their own streams with HubClosedError at shutdown).
export { HubClosedError, SubscriptionLagError } from '../events/hub.js'
export type * from './types.js'
export type { Fresh } from './read-cache.js'
