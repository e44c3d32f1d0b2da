/**
 * A secured service for authorization tests: the real service (test/service/service-fixture.ts) behind
 * the REST app and the gRPC server, both with static-token authentication and the bindings below, over
 * real sockets on 127.0.0.1. Three stored matrix devices: one of tenant-a, one of tenant-b, one unowned.
 */
import * as grpc from '@grpc/grpc-js'
import type { Test } from 'tap'
import type { SubjectLimits } from '../../src/auth/limits.js'
import { Authenticator } from '../../src/auth/authenticator.js'
import type { Principal } from '../../src/auth/identity.js'
import { parseBindings } from '../../src/auth/roles.js'
import { parseStaticTokens, tokenDigest } from '../../src/auth/static-tokens.js'
import { loadApiProto } from '../../src/transport/grpc/proto.js'
import { startGrpcServer } from '../../src/transport/grpc/server.js'
import { buildApp } from '../../src/transport/http/app.js'
import { serviceFixture, type ServiceFixture, U1, U2, U3 } from '../service/service-fixture.js'
import type { TestDatabase } from '../store/pg-helper.js'

/** The subjects of the matrix: `anonymous` presents nothing; every other one a static token of its name. */
export const SUBJECTS = ['anonymous', 'viewer', 'tenant-a', 'tenant-b', 'operator', 'host-admin', 'emulator-admin', 'admin'] as const
export type Subject = (typeof SUBJECTS)[number]

/** The roles file of the fixture (YAML, as an operator writes it). */
export const RBAC_YAML = `bindings:
  - subjects: [viewer]
    roles: [viewer]
  - subjects: [tenant-a]
    roles: [tenant]
  - subjects: [tenant-b]
    roles: [tenant]
  - subjects: [operator]
    roles: [operator]
  - subjects: [host-admin]
    roles: [host-admin]
  - subjects: [emulator-admin]
    roles: [emulator-admin]
  - subjects: [admin]
    roles: [admin]
`

/** The token of a subject (a test secret). */
export const tokenOf = (s: Subject | string) => `tok-${s}-0123456789abcdef`

/** The stored devices by owner. */
export const DEVICES: Record<'tenant-a' | 'tenant-b' | 'none', { uuid: string; owner: string | null; spec: { adapters: number[]; domains: number[] } }> = {
  'tenant-a': { uuid: U1, owner: 'tenant-a', spec: { adapters: [5], domains: [4] } },
  'tenant-b': { uuid: U2, owner: 'tenant-b', spec: { adapters: [5], domains: [5] } },
  none: { uuid: U3, owner: null, spec: { adapters: [6], domains: [6] } },
}

export interface SecuredFixture extends ServiceFixture {
  auth: Authenticator
  base: string
  grpcTarget: string
  /** The principal of every subject but `anonymous` (and of the extra subjects). */
  principals: Map<string, Principal>
  /** grpc-js clients of every API service, by service name (`MdevService`). */
  clients: Record<string, grpc.Client>
  /** The metadata of a subject's calls. */
  metadataOf(s: Subject | string): grpc.Metadata
  /** The headers of a subject's requests. */
  headersOf(s: Subject | string): Record<string, string>
}

/** Options of {@link securedFixture}. */
export interface SecuredFixtureOptions {
  /** Per-subject limits of the service (default none). */
  limits?: SubjectLimits
  /** Further emulated hosts (demo profile) beside `local`. */
  moreHosts?: readonly string[]
  /** Further subjects, each with a token of its name ({@link tokenOf}) and the bindings YAML entries (`  - subjects: ...`) naming them. */
  extra?: { subjects: readonly string[]; bindings: string }
}

/** Builds the fixture. */
export async function securedFixture(t: Test, db: TestDatabase, opts: SecuredFixtureOptions = {}): Promise<SecuredFixture> {
  const fx = await serviceFixture(t, db, 'demo', { ...(opts.limits ? { limits: opts.limits } : {}), ...(opts.moreHosts ? { moreHosts: opts.moreHosts } : {}) })
  const tokens = [...SUBJECTS.filter((s) => s !== 'anonymous'), ...(opts.extra?.subjects ?? [])].map((s) => `${s}:${tokenDigest(tokenOf(s))}`).join('\n')
  const auth = new Authenticator({ tokens: parseStaticTokens(tokens), bindings: parseBindings(RBAC_YAML + (opts.extra?.bindings ?? '')) })
  const app = buildApp({ service: fx.service, auth })
  await app.listen({ host: '127.0.0.1', port: 0 })
  t.teardown(() => app.close())
  const addr = app.server.address()
  if (!addr || typeof addr === 'string') throw new Error('no address')
  const server = await startGrpcServer({ service: fx.service, addr: '127.0.0.1:0', auth, shutdownGraceMs: 500 })
  t.teardown(() => server.close())
  const grpcTarget = `127.0.0.1:${server.port}`
  const { v1 } = loadApiProto()
  const clients: Record<string, grpc.Client> = {}
  for (const [name, ctor] of Object.entries(v1)) {
    if (typeof ctor === 'function' && 'service' in ctor) {
      const c = new (ctor as unknown as typeof grpc.Client)(grpcTarget, grpc.credentials.createInsecure())
      clients[name] = c
      t.teardown(() => c.close())
    }
  }
  const principals = new Map<string, Principal>()
  for (const s of tokens.split('\n').map((l) => l.split(':')[0]!)) {
    principals.set(s, await auth.authenticate({ authorization: `Bearer ${tokenOf(s)}` }))
  }
  // The stored devices, made by the service itself (no principal): masks free adapters 5, 6 and domains 4-6.
  await fx.service.setMasks('local', { apmask: '-5,-6', aqmask: '-4,-5,-6' })
  for (const d of Object.values(DEVICES)) await fx.service.createMdev('local', { uuid: d.uuid, spec: d.spec, ...(d.owner ? { owner: d.owner } : {}) })
  return {
    ...fx,
    auth,
    base: `http://127.0.0.1:${addr.port}`,
    grpcTarget,
    principals,
    clients,
    metadataOf(s) {
      const md = new grpc.Metadata()
      if (s !== 'anonymous') md.set('authorization', `Bearer ${tokenOf(s)}`)
      return md
    },
    headersOf: (s): Record<string, string> => (s === 'anonymous' ? {} : { authorization: `Bearer ${tokenOf(s)}` }),
  }
}

/** Calls a unary method by name; resolves with the status code (0 = OK), the details and the response. */
export function callUnary(client: grpc.Client, method: string, req: unknown, md: grpc.Metadata): Promise<{ code: number; details: string; res: unknown }> {
  const fn = (client as unknown as Record<string, (r: unknown, m: grpc.Metadata, cb: (e: grpc.ServiceError | null, r: unknown) => void) => void>)[method]
  if (!fn) throw new Error(`no client method ${method}`)
  return new Promise((resolve) => {
    fn.call(client, req, md, (err, res) => resolve(err ? { code: err.code, details: err.details, res: null } : { code: 0, details: '', res }))
  })
}
