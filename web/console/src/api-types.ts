/** The shapes of the REST answers the console reads (docs/api.md); only the fields it uses. */

export interface Host {
  name: string
  driver: string
  profile: string | null
  maxAdapterId: number
  maxDomainId: number
}

export interface Adapter {
  apid: number
  type: string
  mode: string
  hwtype: number
  functions: string[]
  config: boolean
  chkstop: boolean
  online: boolean | null
  driver: string
}

export interface Queue {
  apqn: string
  apid: number
  apqi: number
  driver: string
  vfioStatus: string | null
  config: boolean
  chkstop: boolean
  online: boolean | null
  requestqCount: number
  pendingqCount: number
  requestCount: number | null
  owner: string | null
}

export interface Domains {
  usageDomains: number[]
  controlDomains: number[]
  hostDomains: number[]
}

export interface MaskPair {
  apmask: string
  aqmask: string
  apmaskIds: number[]
  aqmaskIds: number[]
}

export interface Masks {
  metadata: { host: string; generation: number; resourceVersion: string }
  spec: MaskPair
  status: (MaskPair & { observedAt: string }) | null
}

export interface BusMdev {
  uuid: string
  managed: boolean
  adapters: number[]
  domains: number[]
  controlDomains: number[]
  matrix: string[]
  guestMatrix: string[]
  guest: string | null
}

export interface Condition {
  type: string
  status: 'True' | 'False' | 'Unknown'
  reason: string
  message: string
  lastTransitionTime: string
}

export interface Mdev {
  metadata: { uuid: string; host: string; generation: number; resourceVersion: string; labels: Record<string, string>; owner: string | null; origin: string }
  spec: { adapters: number[]; domains: number[]; controlDomains: number[]; state: string }
  status: {
    observedGeneration?: number
    active?: boolean
    matrix?: string[]
    guestMatrix?: string[]
    controlDomains?: number[]
    guest?: string | null
    conditions?: Condition[]
  }
}

export interface Violation {
  rule: string
  message: string
  apqn?: string
  id?: number
  field?: string
  owner?: string
  fix?: string
}

/** A plan in its full view (`?view=full`). */
export interface FullPlan {
  view: 'full'
  summary: unknown
  operations: { kind: string }[]
  violations: Violation[]
  claimedApqns: { apqn: string; currentOwner: string | null }[]
  filteredAdapters: { apid: number; reason: string; apqns?: string[] }[]
  drainedQueues: string[]
  deferred: unknown[]
}

/** A problem+json answer. */
export interface Problem {
  status: number
  title: string
  detail?: string
  code?: string
  errno?: string
  violations?: Violation[]
}

/** One stored event as the SSE stream sends it. */
export interface ApEvent {
  seq: number
  time: string
  host: string
  kind: 'mdev' | 'masks' | 'queue' | 'host'
  name: string
  type: string
  message: string
  actor: string
  data: Record<string, unknown>
}
