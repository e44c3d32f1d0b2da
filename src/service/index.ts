// The service's public surface: what transports and the composition root import.
export { ApmatrixService, MAX_LABELS, type ApmatrixServiceOptions } from './apmatrix-service.js'
export type * from './types.js'
