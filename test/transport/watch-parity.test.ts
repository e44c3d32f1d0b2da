/**
 * REST server-sent events and gRPC `Watch` deliver the same events for the same filters (one watch in
 * the service behind both): over one event log, each filter set (host, kinds, types, the libvirt view)
 * is read through both transports from seq 0 and compared with each other and with the log filtered
 * here independently.
 */
import * as grpc from '@grpc/grpc-js'
import t from 'tap'
import { toLibvirtEvent } from '../../src/events/libvirt-lifecycle.js'
import type { Event__Output } from '../../src/generated/grpc/apmatrix/v1/Event.js'
import type { WatchRequest } from '../../src/generated/grpc/apmatrix/v1/WatchRequest.js'
import type { EventRecord } from '../../src/store/index.js'
import { buildApp } from '../../src/transport/http/app.js'
import { U1, U2 } from '../service/service-fixture.js'
import { forEachDatabase } from '../store/pg-helper.js'
import { grpcFixture, ok } from './grpc/grpc-fixture.js'

/** What both transports agree on for one event: its seq, its type, and its libvirt name and device when asked for. */
type Seen = { seq: number; type: string; lifecycle?: string; device?: string }

interface Filter {
  name: string
  host?: string
  kinds?: string[]
  types?: string[]
  libvirt?: boolean
}

async function until(cond: () => boolean, what: string, ms = 20_000): Promise<void> {
  const end = Date.now() + ms
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 5))
  }
}

/** Reads `GET /v1/events` with the filter from seq 0 until `count` events came (and a little longer, to see any extra). */
async function viaSse(base: string, f: Filter, count: number): Promise<Seen[]> {
  const q = new URLSearchParams({ since: '0' })
  if (f.host) q.set('host', f.host)
  if (f.kinds) q.set('kind', f.kinds.join(','))
  if (f.types) q.set('type', f.types.join(','))
  if (f.libvirt) q.set('format', 'libvirt')
  const ac = new AbortController()
  const res = await fetch(`${base}/v1/events?${q}`, { signal: ac.signal })
  if (res.status !== 200) throw new Error(`GET /v1/events?${q}: ${res.status} ${await res.text()}`)
  const seen: Seen[] = []
  let buf = ''
  const reading = (async () => {
    const dec = new TextDecoder()
    try {
      for await (const chunk of res.body!) {
        buf += dec.decode(chunk as Uint8Array, { stream: true })
        let i = buf.indexOf('\n\n')
        while (i >= 0) {
          const data = buf
            .slice(0, i)
            .split('\n')
            .find((l) => l.startsWith('data: '))
          buf = buf.slice(i + 2)
          if (data) {
            const e = JSON.parse(data.slice(6))
            seen.push({ seq: e.seq, type: e.type, ...(f.libvirt ? { lifecycle: e.lifecycle, device: e.device } : {}) })
          }
          i = buf.indexOf('\n\n')
        }
      }
    } catch (e) {
      if ((e as Error).name !== 'AbortError') throw e
    }
  })()
  await until(() => seen.length >= count, `${count} SSE events for ${f.name}`)
  await new Promise((r) => setTimeout(r, 100))
  ac.abort()
  await reading
  return seen
}

/** The same through gRPC Watch. */
async function viaGrpc(events: grpc.Client & { Watch(req: WatchRequest): grpc.ClientReadableStream<Event__Output> }, f: Filter, count: number) {
  const seen: Seen[] = []
  const call = events.Watch({
    since_seq: '0',
    ...(f.host ? { host: f.host } : {}),
    ...(f.kinds ? { kinds: f.kinds } : {}),
    ...(f.types ? { types: f.types } : {}),
    ...(f.libvirt ? { format: 'WATCH_FORMAT_LIBVIRT' as const } : {}),
  })
  call.on('data', (e: Event__Output) =>
    seen.push({ seq: Number(e.seq), type: e.type, ...(f.libvirt ? { lifecycle: e.libvirt_lifecycle, device: e.libvirt_device } : {}) }),
  )
  call.on('error', () => undefined)
  await until(() => seen.length >= count, `${count} gRPC events for ${f.name}`)
  await new Promise((r) => setTimeout(r, 100))
  call.cancel()
  return seen
}

/** The log filtered here, without the service's code: what both must deliver. */
function expected(log: EventRecord[], f: Filter): Seen[] {
  const out: Seen[] = []
  for (const e of log) {
    if ((f.host && e.host !== f.host) || (f.kinds && !f.kinds.includes(e.kind)) || (f.types && !f.types.includes(e.type))) continue
    if (!f.libvirt) {
      out.push({ seq: e.seq, type: e.type })
      continue
    }
    const lv = toLibvirtEvent(e)
    if (lv) out.push({ seq: e.seq, type: e.type, lifecycle: lv.lifecycle, device: lv.device })
  }
  return out
}

forEachDatabase(t, async (t, db) => {
  const fx = await grpcFixture(t, db)
  const app = buildApp({ service: fx.service, docs: false })
  await app.listen({ host: '127.0.0.1', port: 0 })
  t.teardown(() => app.close())
  const addr = app.server.address()
  if (!addr || typeof addr === 'string') throw new Error('no address')
  const base = `http://127.0.0.1:${addr.port}`

  // A log with several kinds and types, of two hosts (the second only in the store: filters see it all the same).
  const { hosts, mdevs } = fx.clients
  await ok(t, hosts.SetMasks.bind(hosts), { host: 'local', apmask: '-5,-6', aqmask: '-4' })
  await ok(t, mdevs.CreateMdev.bind(mdevs), { host: 'local', uuid: U1, spec: { adapters: [5], domains: [4] } })
  await ok(t, mdevs.CreateMdev.bind(mdevs), { host: 'local', uuid: U2, spec: { adapters: [6], domains: [4] } })
  await ok(t, mdevs.UpdateMdev.bind(mdevs), { host: 'local', uuid: U1, labels: { a: 'b' }, update_mask: { paths: ['labels'] } })
  await ok(t, mdevs.DeleteMdev.bind(mdevs), { host: 'local', uuid: U2 })
  await fx.store.events.append({ host: 'other', kind: 'mdev', name: U2, type: 'MdevStarted', message: 'elsewhere' })
  await fx.store.events.append({ host: 'local', kind: 'mdev', name: U1, type: 'MdevStarted', message: 'on the bus' })
  await fx.store.events.append({ host: 'local', kind: 'queue', name: '05.0004', type: 'QueueBound', message: 'bound' })
  await fx.store.events.append({ host: 'local', kind: 'mdev', name: U1, type: 'MdevReconfigured', message: 'no libvirt name' })
  const log = await fx.store.events.list({ since: 0, limit: 1000 })

  const filters: Filter[] = [
    { name: 'everything' },
    { name: 'types MdevDefined,MasksChanged', types: ['MdevDefined', 'MasksChanged'] },
    { name: 'kind mdev, types MdevUndefined,MdevStarted, host local', host: 'local', kinds: ['mdev'], types: ['MdevUndefined', 'MdevStarted'] },
    { name: 'the libvirt view', libvirt: true },
    {
      name: 'the libvirt view of host local, types MdevDefined,MdevStarted,MdevReconfigured',
      host: 'local',
      libvirt: true,
      types: ['MdevDefined', 'MdevStarted', 'MdevReconfigured'],
    },
  ]
  for (const f of filters) {
    await t.test(f.name, async (t) => {
      const want = expected(log, f)
      t.ok(want.length > 0, `the log has events for this filter (${want.length})`)
      const [sse, rpc] = await Promise.all([viaSse(base, f, want.length), viaGrpc(fx.clients.events as never, f, want.length)])
      t.same(rpc, sse, 'gRPC Watch delivers what SSE does')
      t.same(sse, want, 'and both deliver the filtered log')
    })
  }
  t.ok(expected(log, { name: '', libvirt: true }).length < expected(log, { name: '' }).length, 'the libvirt view leaves out the events libvirt has no name for')

  await t.test('a bad filter is INVALID_ARGUMENT on both', async (t) => {
    const r = await fetch(`${base}/v1/events?type=${'x'.repeat(65)}`)
    t.equal(r.status, 400)
    t.match(await r.json(), { code: 'INVALID_ARGUMENT', violations: [{ field: 'types' }] })
    const call = fx.clients.events.Watch({ since_seq: '0', types: ['x'.repeat(65)] })
    const status = await new Promise<grpc.StatusObject>((resolve) => {
      call.on('data', () => undefined)
      call.on('error', () => undefined)
      call.on('status', resolve)
    })
    t.equal(status.code, grpc.status.INVALID_ARGUMENT)
    t.equal(status.metadata.get('code')[0], 'INVALID_ARGUMENT')
  })
})
