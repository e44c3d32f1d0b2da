/**
 * What each REST route needs (docs/security.md (Roles)): verb and resource per `METHOD /route/pattern`,
 * checked by the authentication hook before the route runs (before any existence check, AIP-135).
 * `public` routes answer without authentication (probes, the API description). A /v1 route missing
 * here is refused to everyone (fail closed); the authorization matrix test
 * derives its list of operations from /openapi.json, so a new route cannot be forgotten.
 */
import type { Resource, Verb } from '../../auth/roles.js'

/** A route's requirement. */
export type RoutePermission = { verb: Verb; resource: Resource } | 'public'

const p = (verb: Verb, resource: Resource): RoutePermission => ({ verb, resource })

/** Keyed by `METHOD url-pattern` as fastify registers it (`GET /v1/hosts/:host`). */
export const REST_PERMISSIONS: Readonly<Record<string, RoutePermission>> = {
  'GET /healthz': 'public',
  'GET /readyz': 'public',
  'GET /openapi.json': 'public',
  'GET /metrics': p('read', 'hosts'),
  'GET /v1/auth/whoami': p('read', 'identity'),
  'GET /v1/audit': p('read', 'audit'),
  'GET /v1/hosts': p('read', 'hosts'),
  'GET /v1/hosts/:host': p('read', 'hosts'),
  'GET /v1/hosts/:host/adapters': p('read', 'inventory'),
  'GET /v1/hosts/:host/queues': p('read', 'inventory'),
  'GET /v1/hosts/:host/bus-mdevs': p('read', 'inventory'),
  'GET /v1/hosts/:host/domains': p('read', 'inventory'),
  'GET /v1/hosts/:host/masks': p('read', 'masks'),
  'PUT /v1/hosts/:host/masks': p('update', 'masks'),
  'GET /v1/hosts/:host/mdevs': p('read', 'mdevs'),
  'POST /v1/hosts/:host/mdevs': p('create', 'mdevs'),
  'GET /v1/hosts/:host/mdevs/:uuid': p('read', 'mdevs'),
  'PUT /v1/hosts/:host/mdevs/:uuid': p('update', 'mdevs'),
  'PATCH /v1/hosts/:host/mdevs/:uuid': p('update', 'mdevs'),
  'DELETE /v1/hosts/:host/mdevs/:uuid': p('delete', 'mdevs'),
  'GET /v1/hosts/:host/mdevs/:uuid/export': p('read', 'mdevs'),
  'POST /v1/hosts/:host/import': p('create', 'imports'),
  'PUT /v1/hosts/:host/desired': p('update', 'desired'),
  'POST /v1/hosts/:host/plan': p('run', 'plans'),
  'GET /v1/events': p('watch', 'events'),
  'GET /v1/hosts/:host/emulator/sysfs': p('read', 'sysfs'),
  'POST /v1/hosts/:host/emulator/sysfs': p('update', 'sysfs'),
  'POST /v1/hosts/:host/emulator/hardware': p('update', 'emulator'),
  'GET /v1/hosts/:host/emulator/guests': p('read', 'emulator'),
  'POST /v1/hosts/:host/emulator/guests': p('update', 'emulator'),
  'DELETE /v1/hosts/:host/emulator/guests/:guest': p('update', 'emulator'),
  'POST /v1/hosts/:host/emulator/requests': p('update', 'emulator'),
  'PUT /v1/hosts/:host/emulator/workload': p('update', 'emulator'),
  'POST /v1/hosts/:host/emulator/reboot': p('update', 'emulator'),
  'GET /v1/hosts/:host/emulator/faults': p('read', 'emulator'),
  'PUT /v1/hosts/:host/emulator/faults': p('update', 'emulator'),
  'DELETE /v1/hosts/:host/emulator/faults': p('update', 'emulator'),
}

/** The requirement of a route; `/docs` (Swagger UI and its assets) is public. Undefined: not listed (refused). */
export function routePermission(method: string, url: string | undefined): RoutePermission | undefined {
  if (url === undefined) return undefined
  if (url === '/docs' || url.startsWith('/docs/')) return 'public'
  // The console's static files: the page reads everything through the API, as its caller.
  if (url === '/ui' || url.startsWith('/ui/')) return 'public'
  // CORS preflights (@fastify/cors answers them) carry no credentials by design (Fetch standard): the request
  // they announce is authenticated and checked on its own.
  if (method === 'OPTIONS') return 'public'
  return REST_PERMISSIONS[`${method === 'HEAD' ? 'GET' : method} ${url}`]
}
