/**
 * The event hub over a real store (SQLite and PostgreSQL): replay then live with no gap and no
 * duplicate, filters, catch-up from the ring and from the store, slow consumers that stall nobody,
 * lag ending with a resumable seq, and close.
 */
import fc from 'fast-check'
import t, { type Test } from 'tap'
import { EventHub, HubClosedError, SubscriptionLagError, type EventHubOptions, type SubscribeOptions } from '../../src/events/hub.js'
import type { EventRecord, Store } from '../../src/store/index.js'
import { forEachDatabase } from '../store/pg-helper.js'
import { openStore } from '../store/store-fixture.js'

async function until(cond: () => boolean, what: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 5))
  }
}

async function append(store: Store, n: number, o: { host?: string; kind?: string } = {}): Promise<number[]> {
  const seqs: number[] = []
  for (let i = 0; i < n; i++) seqs.push((await store.events.append({ host: o.host ?? 'h1', kind: o.kind ?? 'mdev', name: `n${i}`, type: 'MdevUpdated' })).seq)
  return seqs
}

function hubOf(t: Test, store: Store, o: Omit<EventHubOptions, 'source'> = {}): EventHub {
  const hub = new EventHub({ source: store.events, pollIntervalMs: 10, ...o })
  t.teardown(() => hub.close())
  return hub
}

/** Subscribes and records what arrives. */
function collect(hub: EventHub, opts: SubscribeOptions, onEvent?: (e: EventRecord) => void | Promise<void>) {
  const got: number[] = []
  const ended: Error[] = []
  const unsubscribe = hub.subscribe(
    opts,
    (e) => {
      got.push(e.seq)
      return onEvent?.(e)
    },
    (err) => ended.push(err),
  )
  return { got, ended, unsubscribe }
}

function strictlyIncreasing(xs: number[]): boolean {
  return xs.every((x, i) => i === 0 || x > xs[i - 1]!)
}

/** What a subscriber must receive: the store's matching events after sinceSeq. */
async function expected(store: Store, since: number, f: { host?: string; kinds?: string[] } = {}): Promise<number[]> {
  const out: number[] = []
  for (;;) {
    const page = await store.events.list({ since: out.length ? out[out.length - 1]! : since, limit: 1000, ...f })
    out.push(...page.map((e) => e.seq))
    if (page.length < 1000) return out
  }
}

forEachDatabase(t, async (t, db) => {
  const store = await openStore(t, db)

  await t.test('replay from sinceSeq, then live: no gap, no duplicate', async (t) => {
    const before = await append(store, 30)
    const hub = hubOf(t, store)
    await hub.start()
    const s = collect(hub, { sinceSeq: before[9]! })
    const during = await append(store, 30)
    await until(() => s.got.length === 50, '50 events')
    t.same(s.got, [...before.slice(10), ...during])
    const fromNow = collect(hub, {})
    const later = await append(store, 5)
    await until(() => fromNow.got.length === 5 && s.got.length === 55, 'live events')
    t.same(fromNow.got, later, 'no sinceSeq: only events stored from now on')
    t.same(s.got.slice(-5), later)
    s.unsubscribe()
    fromNow.unsubscribe()
    t.equal(hub.size, 0)
  })

  await t.test('filters by host and kinds', async (t) => {
    const hub = hubOf(t, store)
    await hub.start()
    const since = hub.lastSeq
    const h2 = collect(hub, { sinceSeq: since, host: 'h2' })
    const masks = collect(hub, { sinceSeq: since, kinds: ['masks', 'host'] })
    await append(store, 3, { host: 'h1', kind: 'mdev' })
    await append(store, 2, { host: 'h2', kind: 'mdev' })
    await append(store, 2, { host: 'h1', kind: 'masks' })
    await append(store, 1, { host: 'h2', kind: 'host' })
    await until(() => h2.got.length === 3 && masks.got.length === 3, 'filtered events')
    t.same(h2.got, await expected(store, since, { host: 'h2' }))
    t.same(masks.got, await expected(store, since, { kinds: ['masks', 'host'] }))
    await hub.flush()
    t.equal(h2.got.length, 3, 'nothing else arrives')
  })

  await t.test('catch-up from the store when the ring no longer covers sinceSeq', async (t) => {
    const hub = hubOf(t, store, { ringSize: 10 })
    await hub.start()
    const from = hub.lastSeq
    await append(store, 40)
    await hub.flush()
    const old = collect(hub, { sinceSeq: 0 })
    const recent = collect(hub, { sinceSeq: from + 35 })
    await append(store, 5)
    const all = await expected(store, 0)
    await until(() => old.got.length === all.length && recent.got.length === 10, 'catch-up')
    t.same(old.got, all, 'from the store, then the ring, then live')
    t.same(
      recent.got,
      all.filter((s) => s > from + 35),
      'from the ring',
    )
  })

  await t.test('a slow consumer stalls neither the others nor the writers; it catches up exactly', async (t) => {
    const hub = hubOf(t, store, { bufferLimit: 5, ringSize: 20 })
    await hub.start()
    const since = hub.lastSeq
    let release!: () => void
    const gate = new Promise<void>((r) => (release = r))
    const slow = collect(hub, { sinceSeq: since }, () => gate)
    const fast = collect(hub, { sinceSeq: since })
    const written = await append(store, 60)
    await until(() => fast.got.length === 60, 'the fast subscriber gets everything')
    t.same(fast.got, written)
    t.equal(slow.got.length, 1, 'the slow one is still on its first event')
    release()
    await until(() => slow.got.length === 60, 'the slow one catches up')
    t.same(slow.got, written, 'after leaving the live set: no gap, no duplicate')
  })

  await t.test('a subscriber too far behind is ended with a resumable seq', async (t) => {
    const hub = hubOf(t, store, { bufferLimit: 2, ringSize: 5, maxLagEvents: 10 })
    await hub.start()
    const since = hub.lastSeq
    let release!: () => void
    const gate = new Promise<void>((r) => (release = r))
    const s = collect(hub, { sinceSeq: since }, (e) => (e.seq === since + 1 ? gate : undefined))
    const written = await append(store, 30)
    await hub.flush()
    release()
    await until(() => s.ended.length === 1, 'the subscription ends')
    const err = s.ended[0]
    t.type(err, SubscriptionLagError)
    const resume = (err as SubscriptionLagError).resumeSeq
    t.equal(resume, s.got[s.got.length - 1], 'resumeSeq = the last seq delivered')
    const again = collect(hub, { sinceSeq: resume })
    await until(() => s.got.length + again.got.length === 30, 'resumed')
    t.same([...s.got, ...again.got], written, 'resume: no gap, no duplicate')
  })

  await t.test('a subscriber that never reads again (its listener never settles) is still ended once too far behind', async (t) => {
    // Issue 11 §5: before, only the pump checked the lag, and a pump stuck in a listener (an SSE or gRPC watcher
    // whose socket never drains) never got there: the watcher kept its queue and its stream forever.
    const hub = hubOf(t, store, { bufferLimit: 2, ringSize: 5, maxLagEvents: 10 })
    await hub.start()
    const since = hub.lastSeq
    const never = new Promise<void>(() => undefined)
    const s = collect(hub, { sinceSeq: since }, () => never)
    const written = await append(store, 30)
    await hub.flush()
    await until(() => s.ended.length === 1, 'the stuck subscription ends')
    t.type(s.ended[0], SubscriptionLagError)
    t.same(s.got, [written[0]], 'only the event its listener is stuck on was handed out')
    t.equal((s.ended[0] as SubscriptionLagError).resumeSeq, written[0], 'resumeSeq = the last seq handed out')
    t.equal(hub.size, 0, 'released')
    const again = collect(hub, { sinceSeq: written[0]! })
    await until(() => again.got.length === 29, 'resumed')
    t.same([...s.got, ...again.got], written, 'resume: no gap, no duplicate')
  })

  await t.test('random interleavings of writes and subscriptions (fast-check)', async (t) => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.oneof(
            fc.record({ write: fc.integer({ min: 1, max: 30 }), host: fc.constantFrom('h1', 'h2') }),
            fc.record({ sub: fc.integer({ min: 0, max: 60 }), host: fc.constantFrom(undefined, 'h1') }),
          ),
          { minLength: 1, maxLength: 8 },
        ),
        fc.integer({ min: 1, max: 8 }),
        async (ops, bufferLimit) => {
          const hub = new EventHub({ source: store.events, pollIntervalMs: 5, bufferLimit, ringSize: 16 })
          try {
            await hub.start()
            const base = hub.lastSeq
            const subs: Array<{ since: number; host?: string; c: ReturnType<typeof collect> }> = []
            for (const op of ops) {
              if ('write' in op) await append(store, op.write, { host: op.host })
              else {
                const since = Math.max(0, base - 20 + op.sub)
                subs.push({
                  since,
                  ...(op.host ? { host: op.host } : {}),
                  c: collect(hub, { sinceSeq: since, ...(op.host ? { host: op.host } : {}) }, () =>
                    Math.random() < 0.1 ? new Promise((r) => setTimeout(r, 1)) : undefined,
                  ),
                })
              }
            }
            for (const s of subs) {
              const want = await expected(store, s.since, s.host ? { host: s.host } : {})
              await until(() => s.c.got.length >= want.length, 'subscriber complete')
              await hub.flush()
              if (JSON.stringify(s.c.got) !== JSON.stringify(want) || !strictlyIncreasing(s.c.got)) return false
            }
            return true
          } finally {
            await hub.close()
          }
        },
      ),
      { numRuns: 15 },
    )
    t.pass('every subscriber got exactly the matching events after its sinceSeq, in order')
  })

  await t.test('close ends every subscription with HubClosedError', async (t) => {
    const hub = new EventHub({ source: store.events, pollIntervalMs: 10 })
    await hub.start()
    const s = collect(hub, { sinceSeq: hub.lastSeq })
    await append(store, 2)
    await until(() => s.got.length === 2, 'events')
    await hub.close()
    t.type(s.ended[0], HubClosedError)
    t.equal((s.ended[0] as HubClosedError).resumeSeq, s.got[1])
    t.equal(hub.size, 0)
  })

  t.test('bad options are refused at construction', async (t) => {
    t.throws(() => new EventHub({ source: store.events, bufferLimit: 0 }), RangeError)
    const hub = hubOf(t, store)
    t.throws(() => hub.subscribe({ sinceSeq: -1 }, () => undefined), RangeError)
  })
})
