/**
 * What each gRPC method needs (docs/security.md (Roles)): verb and resource per full method path,
 * checked by the authentication interceptor when the request message arrives, before the handler runs
 * (before any existence check, AIP-135). Methods of the API services missing here are refused (fail
 * closed); health and reflection are public. The authorization matrix test derives its list of methods
 * from the loaded service descriptors, so a new method cannot be forgotten.
 */
import type { Resource, Verb } from '../../auth/roles.js'
import { API_SERVICES } from './proto.js'

/** A method's requirement. */
export interface MethodPermission {
  verb: Verb
  resource: Resource
}

const p = (verb: Verb, resource: Resource): MethodPermission => ({ verb, resource })

/** Keyed by `/package.Service/Method`. */
export const GRPC_PERMISSIONS: Readonly<Record<string, MethodPermission>> = {
  '/apmatrix.v1.HostService/ListHosts': p('read', 'hosts'),
  '/apmatrix.v1.HostService/GetHost': p('read', 'hosts'),
  '/apmatrix.v1.HostService/GetMasks': p('read', 'masks'),
  '/apmatrix.v1.HostService/SetMasks': p('update', 'masks'),
  '/apmatrix.v1.InventoryService/ListAdapters': p('read', 'inventory'),
  '/apmatrix.v1.InventoryService/ListQueues': p('read', 'inventory'),
  '/apmatrix.v1.InventoryService/ListDomains': p('read', 'inventory'),
  '/apmatrix.v1.InventoryService/ListBusMdevs': p('read', 'inventory'),
  '/apmatrix.v1.MdevService/CreateMdev': p('create', 'mdevs'),
  '/apmatrix.v1.MdevService/GetMdev': p('read', 'mdevs'),
  '/apmatrix.v1.MdevService/ListMdevs': p('read', 'mdevs'),
  '/apmatrix.v1.MdevService/UpdateMdev': p('update', 'mdevs'),
  '/apmatrix.v1.MdevService/DeleteMdev': p('delete', 'mdevs'),
  '/apmatrix.v1.MdevService/ExportMdev': p('read', 'mdevs'),
  '/apmatrix.v1.MdevService/ImportMdevs': p('create', 'imports'),
  '/apmatrix.v1.DesiredStateService/Plan': p('run', 'plans'),
  '/apmatrix.v1.DesiredStateService/Apply': p('update', 'desired'),
  '/apmatrix.v1.EventService/Watch': p('watch', 'events'),
  '/apmatrix.v1.EmulatorService/ReadSysfs': p('read', 'sysfs'),
  '/apmatrix.v1.EmulatorService/WriteSysfs': p('update', 'sysfs'),
  '/apmatrix.v1.EmulatorService/Hardware': p('update', 'emulator'),
  '/apmatrix.v1.EmulatorService/ListGuests': p('read', 'emulator'),
  '/apmatrix.v1.EmulatorService/OpenGuest': p('update', 'emulator'),
  '/apmatrix.v1.EmulatorService/CloseGuest': p('update', 'emulator'),
  '/apmatrix.v1.EmulatorService/SubmitRequests': p('update', 'emulator'),
  '/apmatrix.v1.EmulatorService/SetWorkload': p('update', 'emulator'),
  '/apmatrix.v1.EmulatorService/Reboot': p('update', 'emulator'),
  '/apmatrix.v1.EmulatorService/GetFaults': p('read', 'emulator'),
  '/apmatrix.v1.EmulatorService/SetFaults': p('update', 'emulator'),
  '/apmatrix.v1.EmulatorService/ClearFaults': p('update', 'emulator'),
  '/apmatrix.v1.AuthService/WhoAmI': p('read', 'identity'),
  '/apmatrix.v1.AuthService/ListAuditRecords': p('read', 'audit'),
}

/** The requirement of a method: its entry, `null` for a public method (health, reflection), undefined = refused. */
export function methodPermission(path: string): MethodPermission | null | undefined {
  const hit = GRPC_PERMISSIONS[path]
  if (hit) return hit
  const service = path.split('/')[1] ?? ''
  return (API_SERVICES as readonly string[]).includes(service) || service.startsWith('apmatrix.') ? undefined : null
}
