/**
 * Operational behaviour of the gRPC server over a real socket: health reflecting readiness, server
 * reflection, request ids, deadlines, message size limits, unknown errors as INTERNAL without leaks,
 * graceful close.
 */
import path from 'node:path'
import { createRequire } from 'node:module'
import * as grpc from '@grpc/grpc-js'
import * as protoLoader from '@grpc/proto-loader'
import { protoPath as healthProtoPath } from 'grpc-health-check'
import t from 'tap'
import { ApmatrixService } from '../../../src/service/index.js'
import { StaticHostRegistry } from '../../../src/hosts/managed-host.js'
import { EventHub } from '../../../src/events/hub.js'
import { API_SERVICES } from '../../../src/transport/grpc/proto.js'
import { startGrpcServer } from '../../../src/transport/grpc/server.js'
import { forEachDatabase } from '../../store/pg-helper.js'
import { grpcFixture, ok, unary } from './grpc-fixture.js'

const OPTS = { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true }

interface HealthClient extends grpc.Client {
  Check(req: { service: string }, cb: (err: grpc.ServiceError | null, res?: { status: string }) => void): void
}
interface ReflectionClient extends grpc.Client {
  ServerReflectionInfo(): grpc.ClientDuplexStream<Record<string, unknown>, Record<string, unknown>>
}

function healthClient(target: string): HealthClient {
  const pkg = grpc.loadPackageDefinition(protoLoader.loadSync(healthProtoPath, OPTS)) as unknown as {
    grpc: { health: { v1: { Health: grpc.ServiceClientConstructor } } }
  }
  return new pkg.grpc.health.v1.Health(target, grpc.credentials.createInsecure()) as unknown as HealthClient
}

function reflectionClient(target: string): ReflectionClient {
  const dir = path.dirname(createRequire(import.meta.url).resolve('@grpc/reflection/package.json'))
  const def = protoLoader.loadSync(path.join(dir, 'build/proto/grpc/reflection/v1/reflection.proto'), OPTS)
  const pkg = grpc.loadPackageDefinition(def) as unknown as { grpc: { reflection: { v1: { ServerReflection: grpc.ServiceClientConstructor } } } }
  return new pkg.grpc.reflection.v1.ServerReflection(target, grpc.credentials.createInsecure()) as unknown as ReflectionClient
}

function check(c: HealthClient, service: string): Promise<string> {
  return new Promise((resolve, reject) => c.Check({ service }, (err, res) => (err ? reject(err) : resolve(res!.status))))
}

/** One reflection request, one response. */
function reflect(c: ReflectionClient, req: Record<string, unknown>): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const call = c.ServerReflectionInfo()
    call.on('data', (r) => {
      resolve(r)
      call.end()
    })
    call.on('error', reject)
    call.write(req)
  })
}

/** A service whose `name` method takes `ms` (or throws `err`), the rest as is. */
function tamper(service: ApmatrixService, name: keyof ApmatrixService, fn: () => Promise<unknown>): ApmatrixService {
  return new Proxy(service, {
    get(target, p, recv) {
      if (p === name) return fn
      const v = Reflect.get(target, p, recv)
      return typeof v === 'function' ? v.bind(target) : v
    },
  })
}

forEachDatabase(t, async (t, db) => {
  let ready = true
  const fx = await grpcFixture(t, db, { server: { readiness: () => ready, healthIntervalMs: 60_000 } })
  const health = healthClient(fx.target)
  const refl = reflectionClient(fx.target)
  t.teardown(() => {
    health.close()
    refl.close()
  })

  await t.test('health follows readiness, overall and per service', async (t) => {
    t.equal(await check(health, ''), 'SERVING')
    for (const s of API_SERVICES) t.equal(await check(health, s), 'SERVING', s)
    ready = false
    await fx.grpc.refreshHealth()
    t.equal(await check(health, ''), 'NOT_SERVING', 'store down or lease lost: NOT_SERVING')
    t.equal(await check(health, 'apmatrix.v1.MdevService'), 'NOT_SERVING')
    ready = true
    await fx.grpc.refreshHealth()
    t.equal(await check(health, ''), 'SERVING')
    await t.rejects(check(health, 'no.such.Service'), { code: grpc.status.NOT_FOUND })
  })

  await t.test('reflection lists every service and serves their descriptors', async (t) => {
    const list = (await reflect(refl, { list_services: '' })) as { list_services_response: { service: Array<{ name: string }> } }
    const names = list.list_services_response.service.map((s) => s.name)
    for (const s of [...API_SERVICES, 'grpc.health.v1.Health']) t.ok(names.includes(s), `lists ${s}`)
    const file = (await reflect(refl, { file_containing_symbol: 'apmatrix.v1.MdevService' })) as {
      file_descriptor_response: { file_descriptor_proto: Buffer[] }
    }
    const blobs = file.file_descriptor_response.file_descriptor_proto
    t.ok(blobs.length >= 1)
    t.ok(
      blobs.some((b) => b.includes(Buffer.from('CreateMdevRequest'))),
      'the descriptor describes CreateMdevRequest',
    )
    // Strict clients (grpcurl, Python descriptor pools) need declared dependencies and protoc's map entry names.
    const { FileDescriptorProto } = createRequire(import.meta.url)('protobufjs/ext/descriptor') as {
      FileDescriptorProto: {
        decode(b: Buffer): { name: string; dependency: string[]; messageType: Array<{ name: string; nestedType: Array<{ name: string }> }> }
      }
    }
    const files = blobs.map((b) => FileDescriptorProto.decode(b))
    const api = files.find((f) => f.messageType.some((m) => m.name === 'CreateMdevRequest'))!
    t.ok(api.dependency.length > 0, `the API file declares its dependencies: ${api.dependency.join(', ')}`)
    for (const d of api.dependency)
      t.ok(
        files.some((f) => f.name === d),
        `dependency ${d} is served too`,
      )
    const create = api.messageType.find((m) => m.name === 'CreateMdevRequest')!
    t.same(
      create.nestedType.map((n) => n.name),
      ['LabelsEntry'],
      'map entry named as protoc names it',
    )
  })

  await t.test("x-request-id is the server's; the caller's is kept as x-correlation-id", async (t) => {
    const md = new grpc.Metadata()
    md.set('x-request-id', 'req-abc.1')
    md.set('x-correlation-id', 'spoofed')
    const o = await unary(fx.clients.hosts.GetHost.bind(fx.clients.hosts), { host: 'local' }, { metadata: md })
    const rid = o.headers?.get('x-request-id')[0]
    t.match(rid, /^[0-9a-f-]{36}$/)
    t.equal(o.trailers?.get('x-request-id')[0], rid)
    t.equal(o.headers?.get('x-correlation-id')[0], 'req-abc.1')
    t.equal(o.trailers?.get('x-correlation-id')[0], 'req-abc.1')
    const err = await unary(fx.clients.hosts.GetHost.bind(fx.clients.hosts), { host: 'nope' }, { metadata: md })
    t.match(err.err?.metadata.get('x-request-id')[0], /^[0-9a-f-]{36}$/, 'on errors too')
    t.not(err.err?.metadata.get('x-request-id')[0], rid, 'one per call')
    t.equal(err.err?.metadata.get('x-correlation-id')[0], 'req-abc.1')
    const gen = await unary(fx.clients.hosts.GetHost.bind(fx.clients.hosts), { host: 'local' })
    t.match(gen.headers?.get('x-request-id')[0], /^[0-9a-f-]{36}$/)
    const badMd = new grpc.Metadata()
    badMd.set('x-request-id', 'has spaces; and <symbols>')
    const bad = await unary(fx.clients.hosts.GetHost.bind(fx.clients.hosts), { host: 'local' }, { metadata: badMd })
    t.match(bad.headers?.get('x-request-id')[0], /^[0-9a-f-]{36}$/)
    t.same(bad.headers?.get('x-correlation-id'), [], 'an insane caller id is dropped')
    // The server's id reaches the audit trail and the events through the service; the caller's is in the audit detail.
    const mmd = new grpc.Metadata()
    mmd.set('x-request-id', 'req-masks-1')
    const set = await unary(fx.clients.hosts.SetMasks.bind(fx.clients.hosts), { host: 'local', apmask: '-1' }, { metadata: mmd })
    const serverId = set.headers?.get('x-request-id')[0]
    const ev = (await fx.store.events.list({ limit: 1000 })).find((e) => e.requestId === serverId)
    t.match(ev, { type: 'MasksChanged', actor: /^grpc:/ })
  })

  await t.test('message size limit: a request over 4 MiB is RESOURCE_EXHAUSTED', async (t) => {
    const o = await unary(fx.clients.mdevs.CreateMdev.bind(fx.clients.mdevs), { host: 'local', spec: {}, owner: 'x'.repeat(5 * 1024 * 1024) })
    t.equal(o.err?.code, grpc.status.RESOURCE_EXHAUSTED)
    t.equal((await fx.store.mdevs.listAll('local')).length, 0, 'nothing stored')
  })

  await t.test('deadlines: a slow call ends DEADLINE_EXCEEDED at the client deadline', async (t) => {
    let calls = 0
    const slow = tamper(fx.service, 'listHosts', async () => {
      calls++
      await new Promise((r) => setTimeout(r, 2000))
      return []
    })
    const s = await startGrpcServer({ service: slow, addr: '127.0.0.1:0' })
    t.teardown(() => s.close())
    const { v1 } = (await import('../../../src/transport/grpc/proto.js')).loadApiProto()
    const hosts = new v1.HostService(`127.0.0.1:${s.port}`, grpc.credentials.createInsecure())
    t.teardown(() => hosts.close())
    // Connected first, so the deadline is spent on the call, not on connecting (a loaded machine).
    await new Promise<void>((resolve, reject) => hosts.waitForReady(Date.now() + 10_000, (e) => (e ? reject(e) : resolve())))
    const o = await unary(hosts.ListHosts.bind(hosts), {}, { deadlineMs: 250 })
    t.equal(o.err?.code, grpc.status.DEADLINE_EXCEEDED)
    t.equal(calls, 1)
  })

  await t.test('an unexpected error is INTERNAL without internals; bad input never is', async (t) => {
    const broken = tamper(fx.service, 'getHost', async () => {
      throw new Error('secret: db password in /etc/apmatrix')
    })
    const s = await startGrpcServer({ service: broken, addr: '127.0.0.1:0' })
    t.teardown(() => s.close())
    const { v1 } = (await import('../../../src/transport/grpc/proto.js')).loadApiProto()
    const hosts = new v1.HostService(`127.0.0.1:${s.port}`, grpc.credentials.createInsecure())
    t.teardown(() => hosts.close())
    const o = await unary(hosts.GetHost.bind(hosts), { host: 'local' })
    t.equal(o.err?.code, grpc.status.INTERNAL)
    t.notMatch(o.err?.details, /secret|password|\.ts:|\.js:/)
    t.equal(o.err?.metadata.get('code')[0], 'INTERNAL')
    const bad = await unary(hosts.GetHost.bind(hosts), { host: '' })
    t.equal(bad.err?.code, grpc.status.INVALID_ARGUMENT, 'validation before the service: never INTERNAL')
  })

  await t.test('close is graceful and idempotent', async (t) => {
    const s = await startGrpcServer({ service: fx.service, addr: '127.0.0.1:0' })
    const { v1 } = (await import('../../../src/transport/grpc/proto.js')).loadApiProto()
    const hosts = new v1.HostService(`127.0.0.1:${s.port}`, grpc.credentials.createInsecure())
    const list = await ok(t, hosts.ListHosts.bind(hosts), {})
    t.equal(list.hosts.length, 1)
    await Promise.all([s.close(), s.close()])
    const after = await unary(hosts.ListHosts.bind(hosts), {}, { deadlineMs: 2000 })
    t.equal(after.err?.code, grpc.status.UNAVAILABLE, 'closed: UNAVAILABLE')
    hosts.close()
  })
  // Last: it closes the store.
  await t.test('store down: UNAVAILABLE (never INTERNAL), health NOT_SERVING', async (t) => {
    // A hub of its own that has not read the log yet: with the store down it cannot start.
    const hub = new EventHub({ source: fx.store.events })
    t.teardown(() => hub.close())
    const service = new ApmatrixService({ store: fx.store, hosts: new StaticHostRegistry([fx.host]), reconciler: { enqueue: () => undefined }, hub })
    const s = await startGrpcServer({ service, addr: '127.0.0.1:0', readiness: () => service.ping().then(() => true) })
    t.teardown(() => s.close())
    const { v1 } = (await import('../../../src/transport/grpc/proto.js')).loadApiProto()
    const target = `127.0.0.1:${s.port}`
    const mdevs = new v1.MdevService(target, grpc.credentials.createInsecure())
    const events = new v1.EventService(target, grpc.credentials.createInsecure())
    const h = healthClient(target)
    t.teardown(() => {
      for (const c of [mdevs, events, h]) c.close()
    })
    t.equal(await check(h, ''), 'SERVING')
    await fx.store.close()
    for (const o of [
      await unary(mdevs.GetMdev.bind(mdevs), { host: 'local', uuid: '11111111-1111-4111-8111-111111111111' }),
      await unary(mdevs.ListMdevs.bind(mdevs), { host: 'local' }),
      await unary(mdevs.CreateMdev.bind(mdevs), { host: 'local', spec: { adapters: [7], domains: [4] } }),
    ]) {
      t.equal(o.err?.code, grpc.status.UNAVAILABLE, o.err?.details ?? 'an error')
      t.equal(o.err?.metadata.get('code')[0], 'UNAVAILABLE')
    }
    // A watcher the hub cannot serve is ended UNAVAILABLE (it resumes once the store is back).
    const w = events.Watch({ since_seq: '0' })
    const status = await new Promise<grpc.StatusObject>((resolve) => {
      w.on('data', () => undefined)
      w.on('error', () => undefined)
      w.on('status', resolve)
    })
    t.equal(status.code, grpc.status.UNAVAILABLE, status.details)
    await s.refreshHealth()
    t.equal(await check(h, ''), 'NOT_SERVING', 'readiness follows the store')
  })
})
