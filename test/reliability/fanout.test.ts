/**
 * Event fan-out at scale, on SQLite and PostgreSQL: 1,000 concurrent gRPC watchers (ten channels of 100 streams,
 * as a fleet of clients opens them) and 1,000 concurrent SSE clients each receive every event of a burst, exactly
 * once and in order, and every subscription is released when the clients go. npm test runs the same with 100
 * (test/transport/grpc/watch.test.ts, test/transport/http/events.test.ts); here the numbers a control plane's
 * watchers reach. Printed: the time from the last write to the last watcher holding the burst.
 */
import type * as grpc from '@grpc/grpc-js'
import t from 'tap'
import { forEachDatabase } from '../store/pg-helper.js'
import { grpcFixture, openWatch } from '../transport/grpc/grpc-fixture.js'
import { connect, type SseClient, seqs, sseFixture, storedSeqs, until } from '../transport/http/sse-client.js'

const N = 1000

forEachDatabase(t, async (t, db) => {
  t.test(`${N} concurrent gRPC watchers each receive every event of a burst`, async (t) => {
    const fx = await grpcFixture(t, db, { hub: { bufferLimit: 50 } })
    const BURST = 25
    const since = fx.hub.lastSeq
    const channels = Array.from({ length: 10 }, (_, i) => fx.newClients({ 'grpc.channel_id': i } as grpc.ChannelOptions))
    const ws = Array.from({ length: N }, (_, i) => openWatch(channels[i % 10]!, { since_seq: String(since) }))
    await until(() => fx.hub.size >= N, 'all subscribed', 60_000)
    const written: number[] = []
    for (let i = 0; i < BURST; i++) written.push((await fx.store.events.append({ host: 'local', kind: 'mdev', name: `m${i}`, type: 'MdevUpdated' })).seq)
    const started = Date.now()
    await until(() => ws.every((w) => w.got.length >= BURST), 'every watcher has the burst', 120_000)
    t.ok(
      ws.every((w) => JSON.stringify(w.seqs()) === JSON.stringify(written)),
      'each got exactly the burst, in order',
    )
    t.comment(`gRPC fan-out of ${BURST} events to ${N} watchers: ${Date.now() - started} ms after the last write`)
    for (const w of ws) w.call.cancel()
    await until(() => fx.hub.size === 0, 'every subscription released on cancel', 60_000)
  })

  t.test(`${N} concurrent SSE clients each get every event of a burst`, async (t) => {
    const { base, store, hub } = await sseFixture(t, db)
    const since = await store.events.lastSeq()
    const clients: SseClient[] = []
    // In waves: the listen backlog (511) would otherwise drop SYNs and add retransmission delays.
    for (let i = 0; i < N / 200; i++)
      clients.push(...(await Promise.all(Array.from({ length: 200 }, () => connect(base, `/v1/events?since=${since}&host=local`)))))
    t.ok(clients.every((c) => c.status === 200))
    await until(() => hub.size === N, `${N} subscriptions`, 60_000)
    for (let i = 0; i < 5; i++) await store.events.append({ host: 'local', kind: 'queue', name: `05.000${i}`, type: 'QueueFlushed' })
    const want = await storedSeqs(store, since, { host: 'local' })
    t.equal(want.length, 5)
    const started = Date.now()
    await until(() => clients.every((c) => c.events.length >= 5), 'every client has the burst', 120_000)
    t.ok(
      clients.every((c) => JSON.stringify(seqs(c)) === JSON.stringify(want)),
      'each client: exactly the 5 events, in order',
    )
    t.comment(`SSE fan-out of 5 events to ${N} clients: ${Date.now() - started} ms after the last write`)
    for (const c of clients) c.close()
    await until(() => hub.size === 0, 'all unsubscribed', 60_000)
  })
})
