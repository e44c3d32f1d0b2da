/**
 * The observed status of a matrix device (docs/api.md (Resources)), as the reconciler computes it, the store keeps it
 * and the APIs show it. One definition for all three layers. Pure types.
 */

export type ConditionStatus = 'True' | 'False' | 'Unknown'

/** The condition types apmatrix sets. */
export type ConditionType = 'Ready' | 'Progressing' | 'Degraded' | 'AdapterFiltered' | 'InUseByGuest'

/** A Kubernetes-style condition; `lastTransitionTime` only moves when `status` changes. */
export interface Condition {
  type: ConditionType
  status: ConditionStatus
  reason: string
  message: string
  lastTransitionTime: string
  observedGeneration: number
}

/** A complete status, as every reconcile pass writes it. */
export interface MdevStatus {
  observedGeneration: number
  active: boolean
  matrix: string[]
  guestMatrix: string[]
  controlDomains: number[]
  guest: string | null
  /** Requests flushed when queues moved to this device without a complete drain. */
  lostRequests: number
  /**
   * While a hand-over drains queues this device takes: requests still queued or pending per queue (`aa.dddd`,
   * 0 for a queue already idle and offline for new work). Absent when no drain waits for this device.
   */
  draining?: Record<string, number>
  conditions: Condition[]
}

/** A status as stored and shown: `{}` until the first reconcile pass wrote one. */
export type StoredMdevStatus = Partial<MdevStatus>
