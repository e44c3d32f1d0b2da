/** What `apply` waits for and where each target stands (shared by the waiter and its reports). */
import type { Mdev } from './api-types.js'

/** A device to wait for: Ready at `generation` or later, or absent when `gone`. */
export interface WaitTarget {
  uuid: string
  generation: number
  gone?: boolean
}

/** Where a target stands after a poll. */
export interface TargetState {
  target: WaitTarget
  done: boolean
  /** `Ready`, `Deleted`, or what is holding it up: `Converging: the bus does not match...`, `missing`. */
  summary: string
  /** The device as the poll saw it; absent when it is not in the store (or no poll answered). */
  device?: Mdev
}
