/**
 * What the AP bus asks of the matrix driver (vfio_ap, docs/kernel-model.md V-30..V-41): the bus calls
 * these hooks at the points where the kernel's bus calls into vfio_ap, and imports nothing of the
 * driver, as the kernel's AP bus knows vfio_ap only through its driver callbacks. `VfioAp` implements it.
 */
import type { Mask } from '../domain/mask.js'
import type { HostCfg } from './machine.js'
import type { ApQueue } from './queue.js'

/** The driver callbacks of the AP bus. None may fail (the kernel ignores their result). */
export interface ApDriverHooks {
  /** V-30: a queue was bound to vfio_ap. */
  probeQueue(q: ApQueue): void
  /** V-33: a queue leaves vfio_ap. */
  removeQueue(q: ApQueue): void
  /** V-41/B-24: true when a matrix device holds an APQN of `apm` x `aqm` (a mask write that would hand it back is EBUSY). */
  inUse(apm: Mask, aqm: Mask): boolean
  /** V-35: the host configuration (QCI) changed, seen by a scan before it walks the devices. */
  onConfigChanged(cur: HostCfg, old: HostCfg): void
  /** V-37: the scan that saw a configuration change has finished (re-filter after hot plug). */
  onScanComplete(): void
}
