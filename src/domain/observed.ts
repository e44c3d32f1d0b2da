/**
 * What a bus shows of one host (observed state), as plain data. Produced by the bus port (src/bus/),
 * consumed by the planner and the service. Pure types: no I/O here.
 */

/** Driver a queue is bound to. */
export type QueueDriver = 'cex4queue' | 'vfio_ap' | 'none'

/** An adapter as lszcrypt would show it, plus what the product API exposes (docs/api.md (Resources) Inventory). */
export interface ObservedAdapter {
  apid: number
  /** Compatibility type (O-6): 10 = CEX4 .. 14 = CEX8. */
  hwtype: number
  rawHwtype: number
  /** `CEX8C`, `CEX7A`, `CEX8P` (O-7). */
  type: string
  mode: 'cca' | 'ep11' | 'accel' | 'unknown'
  /** Function word as printed (`0x...`) and decoded names. */
  functions: string[]
  config: boolean
  chkstop: boolean
  /** Only while bound to cex4card (O-9); null otherwise. */
  online: boolean | null
  driver: string
  /** Hardware queue depth of the card (`depth`, O-9; lszcrypt -V QDEPTH); null when the kernel has no such attribute. */
  depth: number | null
}

/** One queue (APQN) and where it is. */
/** Where a queue is: enough for planning (existence and driver), cheap to read for 65,536 queues. */
export interface ObservedQueueRef {
  apqn: string
  apid: number
  apqi: number
  driver: QueueDriver
}

/** One queue with everything the inventory shows. */
export interface ObservedQueue extends ObservedQueueRef {
  /** vfio_ap `status` (V-31), null when not bound to vfio_ap. */
  vfioStatus: 'unassigned' | 'assigned' | 'in use' | null
  config: boolean
  chkstop: boolean
  /** zcrypt `online`, null when not bound to cex4queue. */
  online: boolean | null
  requestqCount: number
  pendingqCount: number
  /** null while the queue is UNINITIATED (the kernel prints `-`, O-12). */
  requestCount: number | null
  /** The uuid of the matrix device that has this APQN assigned, if any. */
  owner: string | null
}

/** One matrix device as the bus shows it. */
export interface ObservedMdev {
  uuid: string
  adapters: number[]
  domains: number[]
  controlDomains: number[]
  /** Assigned APQNs (`05.0004`), V-19. */
  matrix: string[]
  /** What a guest gets after filtering (V-20); empty when the kernel has no guest_matrix. */
  guestMatrix: string[]
}

/**
 * What a host is and what its masks say, read without walking a device (a dozen attribute reads on any
 * host): what `GET host`, `GET masks` and `GET domains` need.
 */
export interface ObservedHostFacts {
  /** Bus `features` (B-34) and matrix features (V-2), e.g. `APXA`, `QACT`, `ap_config`, `guest_matrix`, `hotplug`. */
  features: string[]
  maxAdapterId: number
  maxDomainId: number
  /** Observed masks in the kernel's read format (`0x` + 64 hex). */
  apmask: string
  aqmask: string
  /** Host configuration (QCI): configured adapters, usage domains, control domains. */
  config: { adapters: number[]; domains: number[]; controlDomains: number[] }
  /** `bindings` (B-34): bound/total queue devices and whether the kernel says complete. */
  bindings: { bound: number; total: number; complete: boolean }
  vfioApLoaded: boolean
}

/**
 * What planning and admission need of a host: the host facts, matrix devices and where each queue is bound.
 * Read without touching per-queue attributes, so it stays cheap on large hosts.
 */
export interface ObservedTopology extends ObservedHostFacts {
  queues: ObservedQueueRef[]
  mdevs: ObservedMdev[]
  /** V-3: how many matrix devices the host can hold (`available_instances` + the existing ones); null without vfio_ap. */
  mdevCapacity: number | null
}

/** The full inventory of a host: the topology plus every card's and queue's attributes. */
export interface ObservedHost extends ObservedTopology {
  adapters: ObservedAdapter[]
  queues: ObservedQueue[]
}

/** The matrix of an mdev as ids. */
export interface MatrixConfig {
  adapters: number[]
  domains: number[]
  controlDomains: number[]
}
