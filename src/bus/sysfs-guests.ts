/**
 * Which matrix devices a guest holds, as far as sysfs can tell (drivers `sysfs` and `agent`). sysfs says
 * that a device is in use, not by whom: vfio_ap shows `in use` in the `status` of every queue of a matrix
 * device a KVM guest has opened (V-31). The guest's name is the hypervisor's (libvirt's) knowledge, so it
 * is reported as {@link UNKNOWN_GUEST}. A device with no queue bound to vfio_ap cannot show it.
 */
import { SysfsError } from '../domain/errors.js'
import { parseMatrix } from '../domain/matrix.js'
import { formatApqn } from '../domain/ids.js'
import type { SysfsAccess } from './port.js'

/** The guest name given to a device sysfs shows in use. */
export const UNKNOWN_GUEST = 'unknown'

const MATRIX = '/sys/devices/vfio_ap/matrix'
const DEVICES = `${MATRIX}/mdev_supported_types/vfio_ap-passthrough/devices`

async function orNull(p: Promise<string>): Promise<string | null> {
  try {
    return await p
  } catch (e) {
    if (e instanceof SysfsError) return null
    throw e
  }
}

/**
 * The devices whose queues read `in use`, each with guest {@link UNKNOWN_GUEST}, sorted by uuid. Reads one
 * queue `status` per device (the first queue bound to vfio_ap); a device that vanishes meanwhile is skipped.
 */
export async function guestsFromQueueStatus(fs: SysfsAccess): Promise<Array<{ uuid: string; guest: string }>> {
  let uuids: string[]
  try {
    uuids = await fs.list(DEVICES)
  } catch (e) {
    if (e instanceof SysfsError) return [] // vfio_ap not loaded
    throw e
  }
  const out: Array<{ uuid: string; guest: string }> = []
  for (const uuid of uuids.sort()) {
    const text = await orNull(fs.read(`${MATRIX}/${uuid}/matrix`))
    if (text === null) continue
    for (const q of parseMatrix(text).apqns) {
      const status = await orNull(fs.read(`/sys/bus/ap/devices/${formatApqn(q.apid, q.apqi)}/status`))
      if (status === null) continue // not bound to vfio_ap: no status (V-31); try the next queue
      if (status.trim() === 'in use') out.push({ uuid, guest: UNKNOWN_GUEST })
      break
    }
  }
  return out
}
