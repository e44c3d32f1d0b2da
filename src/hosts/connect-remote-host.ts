/**
 * `name@host:port` in APMATRIX_HOSTS: one syntax for both kinds of remote host. The server's host-bus
 * Info says what it offers: with the emulator-control service it is `apmatrix emulator serve` (driver
 * `remote-emulator`), without it an `apmatrix agent` on a real LPAR (driver `agent`).
 */
import { connectEmulator } from '../emulator-remote/client.js'
import { EMULATOR_CONTROL_SERVICE_NAME } from '../emulator-remote/proto.js'
import { connectHostBus, type HostBusClientOptions } from '../hostbus/client.js'
import { AgentHost } from './agent-host.js'
import { RemoteEmulatedHost } from './remote-emulated-host.js'

/**
 * Connects to the host-bus server at `addr`, waits until it answers (RemoteHostError UNAVAILABLE after
 * `timeoutMs`) and returns the managed host its Info calls for.
 */
export async function connectRemoteHost(
  name: string,
  addr: string,
  timeoutMs = 10_000,
  opts: HostBusClientOptions = {},
): Promise<RemoteEmulatedHost | AgentHost> {
  const client = connectHostBus(addr, opts)
  let info
  try {
    await client.waitForReady(timeoutMs)
    info = await client.info()
  } catch (e) {
    client.close()
    throw e
  }
  if (!info.services.includes(EMULATOR_CONTROL_SERVICE_NAME)) return new AgentHost(name, client)
  client.close()
  return new RemoteEmulatedHost(name, connectEmulator(addr, opts))
}
