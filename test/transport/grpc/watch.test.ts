/**
 * EventService.Watch over a real socket: events of service calls, resume after a disconnect with no
 * gap and no duplicate, 100 concurrent watchers on ten channels each receiving every event of a burst, a
 * paused (slow) client that stalls nobody, clean end on cancel, bad requests, and shutdown. The same at
 * scale (1,000 watchers on each transport) is in test/reliability/fanout.test.ts.
 */
import * as grpc from '@grpc/grpc-js'
import t from 'tap'
import { forEachDatabase } from '../../store/pg-helper.js'
import { U1 } from '../../service/service-fixture.js'
import { grpcFixture, ok, openWatch as watch } from './grpc-fixture.js'

async function until(cond: () => boolean, what: string, ms = 20_000): Promise<void> {
  const end = Date.now() + ms
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 5))
  }
}

forEachDatabase(t, async (t, db) => {
  const fx = await grpcFixture(t, db, { hub: { bufferLimit: 50 } })
  const { clients, store } = fx

  await t.test('service writes arrive as events with every field', async (t) => {
    const w = watch(clients, { since_seq: String(fx.hub.lastSeq), host: 'local' })
    await ok(t, clients.hosts.SetMasks.bind(clients.hosts), { host: 'local', apmask: '-5', aqmask: '-4' })
    const md = new grpc.Metadata()
    md.set('x-request-id', 'watch-req-1')
    let serverId = ''
    await new Promise<void>((resolve, reject) =>
      clients.mdevs
        .CreateMdev({ host: 'local', uuid: U1, spec: { adapters: [5], domains: [4] } }, md, (err) => (err ? reject(err) : resolve()))
        .on('metadata', (m) => (serverId = String(m.get('x-request-id')[0]))),
    )
    await until(() => w.got.length === 2, 'two events')
    t.match(w.got[0], { type: 'MasksChanged', kind: 'masks', host: 'local' })
    t.match(serverId, /^[0-9a-f-]{36}$/, "events carry the server's request id")
    t.match(w.got[1], { type: 'MdevDefined', kind: 'mdev', host: 'local', name: U1, request_id: serverId, actor: /^grpc:/, time: /^\d{4}-/ })
    t.match(JSON.parse(w.got[1]!.data_json), { generation: 1 })
    t.ok(Number(w.got[1]!.seq) > Number(w.got[0]!.seq))
    w.call.cancel()
  })

  await t.test('resume after a disconnect: no gap, no duplicate', async (t) => {
    const start = fx.hub.lastSeq
    const first = watch(clients, { since_seq: String(start) })
    const burst1 = []
    for (let i = 0; i < 20; i++) burst1.push((await store.events.append({ host: 'local', kind: 'queue', name: `q${i}`, type: 'QueueBound' })).seq)
    await until(() => first.got.length >= 7, 'some events')
    first.call.cancel()
    await until(() => first.out.error !== undefined, 'cancelled')
    t.equal(first.out.error?.code, grpc.status.CANCELLED)
    const seen = first.seqs()
    const burst2 = []
    for (let i = 0; i < 20; i++) burst2.push((await store.events.append({ host: 'local', kind: 'queue', name: `r${i}`, type: 'QueueUnbound' })).seq)
    const second = watch(clients, { since_seq: String(seen[seen.length - 1]) })
    await until(() => seen.length + second.got.length >= 40, 'the rest')
    await fx.hub.flush()
    t.same([...seen, ...second.seqs()], [...burst1, ...burst2], 'the union is exactly the log, in order')
    second.call.cancel()
  })

  await t.test('from_now and kinds filters; bad requests are INVALID_ARGUMENT', async (t) => {
    await store.events.append({ host: 'local', kind: 'host', name: 'local', type: 'HostBooted' })
    await fx.hub.flush()
    await until(() => fx.hub.size === 0, 'earlier watches released')
    const now = watch(clients, { from_now: true, kinds: ['masks'] })
    // from_now means "after the newest event when the server takes the call": wait for that moment.
    await until(() => fx.hub.size === 1, 'the watch is subscribed')
    await store.events.append({ host: 'local', kind: 'host', name: 'local', type: 'HostBooted' })
    const m = await store.events.append({ host: 'local', kind: 'masks', name: 'masks', type: 'MasksChanged' })
    await until(() => now.got.length === 1, 'one event')
    t.equal(Number(now.got[0]!.seq), m.seq)
    now.call.cancel()

    const bad = watch(clients, { kinds: ['bad kind!'] })
    await until(() => bad.out.status !== undefined, 'status')
    t.equal(bad.out.status?.code, grpc.status.INVALID_ARGUMENT)
    const badHost = watch(clients, { host: '../x' })
    await until(() => badHost.out.status !== undefined, 'status')
    t.equal(badHost.out.status?.code, grpc.status.INVALID_ARGUMENT)
    const badSeq = watch(clients, { since_seq: '18446744073709551615' })
    await until(() => badSeq.out.status !== undefined, 'status')
    t.equal(badSeq.out.status?.code, grpc.status.INVALID_ARGUMENT)
  })

  await t.test('100 concurrent watchers on ten channels each receive every event of a burst', async (t) => {
    const N = 100
    const BURST = 25
    const since = fx.hub.lastSeq
    // Ten channels with ten streams each, as a fleet of clients would open them.
    const channels = Array.from({ length: 10 }, (_, i) => fx.newClients({ 'grpc.channel_id': i } as grpc.ChannelOptions))
    const ws = Array.from({ length: N }, (_, i) => watch(channels[i % 10]!, { since_seq: String(since) }))
    await until(() => fx.hub.size >= N, 'all subscribed')
    const written: number[] = []
    for (let i = 0; i < BURST; i++) written.push((await store.events.append({ host: 'local', kind: 'mdev', name: `m${i}`, type: 'MdevUpdated' })).seq)
    const started = Date.now()
    await until(() => ws.every((w) => w.got.length >= BURST), 'every watcher has the burst', 60_000)
    t.ok(
      ws.every((w) => JSON.stringify(w.seqs()) === JSON.stringify(written)),
      'each got exactly the burst, in order',
    )
    t.comment(`fan-out of ${BURST} events to ${N} watchers: ${Date.now() - started} ms after the last write`)
    for (const w of ws) w.call.cancel()
    await until(() => fx.hub.size === 0, 'every subscription released on cancel')
  })

  await t.test('a paused (slow) client stalls neither the writers nor the other watchers', async (t) => {
    const since = fx.hub.lastSeq
    const slowClients = fx.newClients()
    const slow = watch(slowClients, { since_seq: String(since) })
    slow.call.pause()
    const fast = watch(clients, { since_seq: String(since) })
    const message = 'x'.repeat(4000)
    const written: number[] = []
    // ~1.2 MB of events: far beyond the HTTP/2 windows (64 KiB) and the hub's per-subscriber buffer (50).
    for (let b = 0; b < 3; b++) {
      await store.transaction(async (tx) => {
        for (let i = 0; i < 100; i++)
          written.push((await tx.events.append({ host: 'local', kind: 'queue', name: `s${b}.${i}`, type: 'QueueFlushed', message })).seq)
      })
    }
    await until(() => fast.got.length === written.length, 'the fast watcher has everything', 60_000)
    t.same(fast.seqs(), written)
    t.ok(slow.got.length < written.length, `the paused watcher has only ${slow.got.length} so far`)
    slow.call.resume()
    await until(() => slow.got.length === written.length, 'the slow watcher catches up', 60_000)
    t.same(slow.seqs(), written, 'no gap, no duplicate for the slow watcher')
    slow.call.cancel()
    fast.call.cancel()
  })

  await t.test('server shutdown ends watches with UNAVAILABLE and a resume-seq', async (t) => {
    const since = fx.hub.lastSeq
    const w = watch(clients, { since_seq: String(since) })
    const e = await store.events.append({ host: 'local', kind: 'host', name: 'local', type: 'HostBooted' })
    await until(() => w.got.length === 1, 'one event')
    await fx.grpc.close()
    await until(() => w.out.status !== undefined, 'status')
    t.equal(w.out.status?.code, grpc.status.UNAVAILABLE)
    t.equal(w.out.status?.metadata.get('resume-seq')[0], String(e.seq))
  })
})
