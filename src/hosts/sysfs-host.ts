/**
 * A host driven through a sysfs tree with plain file I/O (driver `sysfs`): the `/sys` of the machine
 * apmatrix runs on (an s390 LPAR), or a mount of one (the emulator's FUSE view). The bus port is the same
 * SysfsBus every driver uses, over node:fs; writes are made under the s390-tools AP configuration lock,
 * changes are noticed by udev or polling (src/bus/node-sysfs-access.ts). No emulator controls.
 */
import type { NodeSysfsAccess } from '../bus/node-sysfs-access.js'
import type { SysfsAccess } from '../bus/port.js'
import { SysfsBus } from '../bus/sysfs-bus.js'
import { guestsFromQueueStatus } from '../bus/sysfs-guests.js'
import type { HostIdentity } from './host-identity.js'
import type { HostInfo, ManagedHost } from './managed-host.js'

/** What a sysfs host needs of its access: the file operations (a NodeSysfsAccess, or a wrapper of one), its root, and close. */
export type LocalSysfsAccess = SysfsAccess & Pick<NodeSysfsAccess, 'root' | 'close'>

/** A managed host over a local sysfs tree. */
export class SysfsHost implements ManagedHost {
  readonly bus: SysfsBus
  readonly emulator = null

  constructor(
    readonly name: string,
    private readonly access: LocalSysfsAccess,
    private readonly identity: HostIdentity,
  ) {
    this.bus = new SysfsBus(access)
  }

  /** The sysfs root this host is driven through. */
  get root(): string {
    return this.access.root
  }

  async info(): Promise<HostInfo> {
    const [machineId, bootId, kernel] = await Promise.all([this.identity.machineId(), this.identity.bootId(), this.identity.kernel()])
    return { name: this.name, driver: 'sysfs', profile: null, kernel, machineId, bootId }
  }

  /** Devices whose queues sysfs shows `in use` (V-31); by whom is the hypervisor's knowledge, so the guest reads `unknown`. */
  async guests(): Promise<Array<{ uuid: string; guest: string }>> {
    return guestsFromQueueStatus(this.access)
  }

  async close(): Promise<void> {
    await this.access.close()
  }
}
