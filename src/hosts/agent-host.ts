/**
 * A real host (an s390 LPAR) reached through `apmatrix agent` over the host-bus service: the same bus
 * port as every other driver, fenced writes, one AP configuration lock hold per reconcile pass (the
 * agent's `Lock` sessions) and the agent's change reports (uevents or polls). No emulator controls.
 */
import { SysfsBus } from '../bus/sysfs-bus.js'
import { guestsFromQueueStatus } from '../bus/sysfs-guests.js'
import type { HostBusClient } from '../hostbus/client.js'
import type { HostInfo, ManagedHost } from './managed-host.js'
import { hostInfoOf } from './remote-emulated-host.js'

/** A managed host behind an agent. */
export class AgentHost implements ManagedHost {
  readonly bus: SysfsBus
  readonly emulator = null

  /** `client` must reach an agent (its Info has no emulator-control service): see src/hosts/connect-remote-host.ts. */
  constructor(
    readonly name: string,
    private readonly client: HostBusClient,
  ) {
    this.bus = new SysfsBus(client)
  }

  async info(): Promise<HostInfo> {
    return hostInfoOf(this.name, 'agent', await this.client.info(), null)
  }

  /** Devices whose queues sysfs shows `in use` (V-31); by whom is the hypervisor's knowledge, so the guest reads `unknown`. */
  async guests(): Promise<Array<{ uuid: string; guest: string }>> {
    return guestsFromQueueStatus(this.client)
  }

  async close(): Promise<void> {
    this.client.close()
  }
}
