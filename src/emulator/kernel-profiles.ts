import type { Errno } from '../domain/errors.js'
import type { KernelProfileName } from './api.js'

/**
 * Everything that differs between the kernel versions the emulator models (docs/kernel-model.md §5, X-1..X-3,
 * V-2, V-4, V-29, B-12). Code asks this table instead of testing the profile name.
 */
export interface KernelBehaviour {
  name: KernelProfileName
  /** X-1/B-30: bind of an already bound device. */
  bindAlreadyBound: Errno
  /** X-1/V-4: `create` with no instances left. */
  createOverLimit: Errno
  /** X-2/V-29: remove of an mdev a guest uses: `EBUSY` (legacy) or the request protocol of a simulated QEMU (current). */
  removeInUse: 'EBUSY' | 'request'
  /** X-3/V-14: assign requires every resulting APQN bound to vfio_ap, and assign/unassign with a guest attached fails EBUSY. */
  legacyAssign: boolean
  /** V-20/V-26: shadow APCB filtering and hot plug (v6.0+). */
  hotplug: boolean
  /** V-19: `guest_matrix` attribute (v6.0+). */
  guestMatrix: boolean
  /** V-22/V-23: `ap_config` attribute (v6.10+). */
  apConfig: boolean
  /** V-2: text of `matrix/features`, or undefined when the attribute does not exist. */
  matrixFeatures: string | undefined
  /** B-12/B-28/B-33: queue `driver_override` (v6.19+). */
  driverOverride: boolean
}

const current: KernelBehaviour = {
  name: 'current-6.x',
  bindAlreadyBound: 'EBUSY',
  createOverLimit: 'EUSERS',
  removeInUse: 'request',
  legacyAssign: false,
  hotplug: true,
  guestMatrix: true,
  apConfig: true,
  matrixFeatures: 'guest_matrix hotplug ap_config',
  driverOverride: false,
}

/**
 * The three profiles. legacy-5.x models 5.13..5.19 (after the driver-core change, so an already
 * bound device gives EBUSY; X-1), with the 4.20-5.x vfio_ap assign rules and EPERM for create.
 */
export const kernelProfiles: Record<KernelProfileName, KernelBehaviour> = {
  'current-6.x': current,
  'legacy-5.x': {
    name: 'legacy-5.x',
    bindAlreadyBound: 'EBUSY',
    createOverLimit: 'EPERM',
    removeInUse: 'EBUSY',
    legacyAssign: true,
    hotplug: false,
    guestMatrix: false,
    apConfig: false,
    matrixFeatures: undefined,
    driverOverride: false,
  },
  '6.19-override': { ...current, name: '6.19-override', driverOverride: true },
}

/** Looks a profile up by name; undefined for an unknown name. */
export function kernelProfile(name: string): KernelBehaviour | undefined {
  return Object.hasOwn(kernelProfiles, name) ? kernelProfiles[name as KernelProfileName] : undefined
}
