/**
 * {@link SysfsAccess} over an in-process emulated host. Each call is one synchronous, atomic operation of
 * the emulator core (its global lock, X-5), exposed as a promise like a real file operation.
 */
import type { EmulatedHostApi } from '../emulator/api.js'
import type { SysfsAccess } from './port.js'

/** Wraps an emulated host's sysfs face for the bus port. */
export function emulatorAccess(host: EmulatedHostApi): SysfsAccess {
  return {
    read: async (path) => host.read(path),
    write: async (path, value) => host.write(path, value),
    list: async (path) => host.list(path),
    readlink: async (path) => host.readlink(path),
  }
}
