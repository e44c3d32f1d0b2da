/**
 * Sharing the hosts between replicas (docs/api.md (Reconcile), "Sharing the hosts"): a replica takes at most its
 * share of the leases (ceil(hosts / live replicas) + slack), gives up the excess when another replica joins, and
 * takes more when one leaves. The live replicas are counted from heartbeats in the store (ReplicaRepo).
 */
import t, { type Test } from 'tap'
import { LocalEmulatedHost } from '../../src/hosts/local-emulated-host.js'
import { StaticHostRegistry } from '../../src/hosts/managed-host.js'
import { leaseShare, Reconciler } from '../../src/reconciler/reconciler.js'
import type { Store } from '../../src/store/store.js'
import { until } from '../scenario/rest-client.js'
import { forEachDatabase, freshDatabase, type TestDatabase } from '../store/pg-helper.js'
import { addHost, manualClock, openStore } from '../store/store-fixture.js'

const HOSTS = 6

t.test('leaseShare: the even share rounded up, plus the slack', async (t) => {
  t.equal(leaseShare(200, 3, 1), 68)
  t.equal(leaseShare(200, 2, 1), 101)
  t.equal(leaseShare(200, 1, 0), 200, 'one replica alone takes every host')
  t.equal(leaseShare(7, 3, 0), 3)
  t.equal(leaseShare(5, 0, 0), 5, 'no replica counted yet is one (the caller)')
  for (let h = 0; h <= 50; h++) for (let r = 1; r <= 7; r++) t.ok(r * leaseShare(h, r, 0) >= h, `${r} shares cover ${h} hosts`)
})

async function fleet(t: Test, db: TestDatabase): Promise<{ store: Store; hosts: StaticHostRegistry }> {
  const store = await openStore(t, await freshDatabase(t, db.provider))
  const list: LocalEmulatedHost[] = []
  for (let i = 0; i < HOSTS; i++) {
    await addHost(store, `h${i}`)
    const h = new LocalEmulatedHost({ name: `h${i}`, profile: 'spec-fixture', realtime: false })
    t.teardown(() => h.close())
    list.push(h)
  }
  return { store, hosts: new StaticHostRegistry(list) }
}

/** Live lease holders by count, from the store. */
async function holders(store: Store): Promise<Record<string, number>> {
  const out: Record<string, number> = {}
  for (let i = 0; i < HOSTS; i++) {
    const l = await store.leases.get(`h${i}`)
    if (l && l.expiresAt > store.now()) out[l.holder] = (out[l.holder] ?? 0) + 1
  }
  return out
}

/** Waits until each holder in `want` holds that many live leases (others may hold some too); resolves with them all. */
function untilHolding(store: Store, want: Record<string, number>, what: string, timeoutMs = 30_000): Promise<Record<string, number>> {
  return until(
    what,
    async () => {
      const h = await holders(store)
      return Object.entries(want).every(([holder, n]) => h[holder] === n) ? h : undefined
    },
    { timeoutMs, describe: () => holders(store) },
  )
}

forEachDatabase(t, async (t, db) => {
  t.test('replica heartbeats: counted while live, gone when expired or left', async (t) => {
    const clock = manualClock()
    const store = await openStore(t, await freshDatabase(t, db.provider), { clock: clock.now })
    t.same(await store.replicas.heartbeat('a', 1000), { live: 1, othersNextExpiry: null })
    t.same(await store.replicas.heartbeat('b', 1000), { live: 2, othersNextExpiry: new Date(clock.now().getTime() + 1000) }, "a's row expires first")
    clock.advance(600)
    t.equal((await store.replicas.heartbeat('a', 1000)).live, 2, 'a renewed, b still live')
    clock.advance(600)
    t.same(await store.replicas.heartbeat('a', 1000), { live: 1, othersNextExpiry: null }, 'b expired')
    await store.replicas.leave('a')
    t.equal((await store.replicas.heartbeat('c', 1000)).live, 1, 'a left')
    // A count only reads: it says who is live (the caller always) and marks no one alive.
    await store.replicas.heartbeat('c', 1000)
    clock.advance(400)
    t.same(await store.replicas.count('d'), { live: 2, othersNextExpiry: new Date(clock.now().getTime() + 600) }, 'c live, d (no row) counts itself')
    t.same(await store.replicas.count('c'), { live: 1, othersNextExpiry: null }, 'c alone')
    t.same(await store.replicas.count('d'), { live: 2, othersNextExpiry: new Date(clock.now().getTime() + 600) }, "c's count did not renew its row")
    clock.advance(601)
    t.same(await store.replicas.count('d'), { live: 1, othersNextExpiry: null }, "c's row ran out: its counts renewed nothing")
  })

  t.test('renewMany extends the leases the holder still has, and says which', async (t) => {
    const clock = manualClock()
    const store = await openStore(t, await freshDatabase(t, db.provider), { clock: clock.now })
    for (const h of ['h0', 'h1']) t.equal((await store.leases.tryAcquire(h, 'a', 1000)).fencingToken, 1)
    await store.leases.tryAcquire('h2', 'b', 1000)
    clock.advance(800)
    const r = await store.leases.renewMany(
      'a',
      ['h0', 'h1', 'h2'].map((host) => ({ host, fencingToken: 1 })),
      1000,
    )
    t.same([...r.renewed].sort(), ['h0', 'h1'], "b's lease is not a's to renew")
    t.equal(r.expiresAt.getTime(), clock.now().getTime() + 1000)
    t.equal((await store.leases.get('h0'))?.expiresAt.getTime(), r.expiresAt.getTime(), 'stored')
    clock.advance(1500)
    t.equal((await store.leases.tryAcquire('h1', 'b', 1000)).fencingToken, 2, 'b takes h1 once it expired')
    const again = await store.leases.renewMany(
      'a',
      ['h0', 'h1'].map((host) => ({ host, fencingToken: 1 })),
      1000,
    )
    t.same([...again.renewed], [], 'an expired lease and a lease taken over are both lost')
    t.equal((await store.leases.get('h1'))?.holder, 'b')
  })

  t.test('three replicas share the hosts; one stops and the other two take its share', async (t) => {
    const { store, hosts } = await fleet(t, db)
    const make = (holder: string, slack = 0) => new Reconciler({ store, hosts, holder, leaseTtlMs: 900, resyncMs: 200, leaseShareSlack: slack })
    const a = make('a')
    a.start()
    t.teardown(() => a.stop())
    // Alone, the first replica takes every host.
    await until('a holds every host', async () => a.heldHosts().length === HOSTS, { timeoutMs: 30_000 })
    const b = make('b')
    const c = make('c')
    b.start()
    c.start()
    t.teardown(() => b.stop())
    t.teardown(() => c.stop())
    const even = await untilHolding(store, { a: 2, b: 2, c: 2 }, 'the leases spread 2/2/2')
    t.same(even, { a: 2, b: 2, c: 2 }, 'a gave up what the others took: each holds its share')
    t.equal(a.leaseCap(), 2)
    await c.stop()
    const two = await untilHolding(store, { a: 3, b: 3 }, 'a and b take c share')
    t.same(two, { a: 3, b: 3 }, 'the hosts of the replica that left moved to the others')
  })

  t.test('negative control: without sharing the first replica keeps every host', async (t) => {
    const { store, hosts } = await fleet(t, db)
    // A long lease: under load a late renewal must not hand a host to b by expiry (that is not what is tested).
    const make = (holder: string) => new Reconciler({ store, hosts, holder, leaseTtlMs: 10_000, resyncMs: 200, leaseShareSlack: -1 })
    const a = make('a')
    a.start()
    t.teardown(() => a.stop())
    await until('a holds every host', async () => a.heldHosts().length === HOSTS, { timeoutMs: 30_000 })
    const b = make('b')
    b.start()
    t.teardown(() => b.stop())
    // Several renewal periods and passes of b: with sharing, a would have given up b's share by now (the test above).
    await new Promise((r) => setTimeout(r, 4000))
    t.same(await holders(store), { a: HOSTS }, 'a still holds every host')
    t.same(b.heldHosts(), [])
  })
})

forEachDatabase(t, async (t, db) => {
  // A replica that died (it renews nothing any more): its heartbeat row and its leases run out together, row first.
  // The survivor looks at each of its hosts again just after that lease's expiry (store clock), and, being at its
  // share, counts the live replicas again before refusing a host. Its own lease time and resync period are ten
  // minutes here, so looking again a lease time later (the behaviour before) would not end within the test's time.
  t.test("a dead replica's hosts are taken when its leases run out, not a lease time later", async (t) => {
    const { store, hosts } = await fleet(t, db)
    const GHOST_TTL_MS = 3000
    await store.replicas.heartbeat('ghost', GHOST_TTL_MS)
    const ghostTokens: Record<string, number> = {}
    for (const h of ['h3', 'h4', 'h5']) ghostTokens[h] = (await store.leases.tryAcquire(h, 'ghost', GHOST_TTL_MS)).fencingToken
    const b = new Reconciler({ store, hosts, holder: 'b', leaseTtlMs: 600_000, resyncMs: 600_000, leaseShareSlack: 0 })
    b.start()
    t.teardown(() => b.stop())
    await until('b holds the three free hosts', async () => b.heldHosts().length >= 3, { timeoutMs: 60_000 })
    await until('b holds every host', async () => b.heldHosts().length === HOSTS, { timeoutMs: 60_000, describe: () => b.heldHosts() })
    t.same(await holders(store), { b: HOSTS }, "the ghost's three hosts are b's now")
    for (const h of ['h3', 'h4', 'h5']) t.ok((await store.leases.get(h))!.fencingToken > ghostTokens[h]!, `${h}: a new fencing token`)
    t.equal(b.leaseCap(), HOSTS, 'b counted itself alone once the ghost row ran out')
  })

  // Two survivors at their share of three, a ghost with two hosts. When the ghost's row and leases run out, both
  // survivors' shares grow to three and both claim the ghost's hosts at once; the acquisitions in flight fill the
  // share, and the one that loses its race must not leave the other host for a lease time (ten minutes here).
  t.test("two survivors racing for a dead replica's hosts take all of them at once, not a lease time later", async (t) => {
    const { store, hosts } = await fleet(t, db)
    const GHOST_TTL_MS = 2000
    const TTL_MS = 600_000
    for (const r of ['a', 'b']) await store.replicas.heartbeat(r, TTL_MS)
    await store.replicas.heartbeat('ghost', GHOST_TTL_MS)
    for (const h of ['h4', 'h5']) await store.leases.tryAcquire(h, 'ghost', GHOST_TTL_MS)
    const a = new Reconciler({ store, hosts, holder: 'a', leaseTtlMs: TTL_MS, resyncMs: TTL_MS, leaseShareSlack: 0 })
    const b = new Reconciler({ store, hosts, holder: 'b', leaseTtlMs: TTL_MS, resyncMs: TTL_MS, leaseShareSlack: 0 })
    a.start()
    b.start()
    t.teardown(() => a.stop())
    t.teardown(() => b.stop())
    await untilHolding(store, { a: 2, b: 2 }, 'a and b hold two hosts each')
    const taken = await untilHolding(store, { a: 3, b: 3 }, "a and b hold the ghost's hosts too", 60_000)
    t.same(taken, { a: 3, b: 3 }, 'three each')
  })

  // The row of a replica at its share is renewed with its leases only (a count between renewals reads): when it
  // dies, its row runs out no later than its leases, so the survivors' shares have grown by the time its hosts are free.
  t.test("a replica's heartbeat row never outlives its leases, however often it counts", async (t) => {
    const { store, hosts } = await fleet(t, db)
    const TTL_MS = 1500
    // Another replica holds half the hosts for as long as the test runs: b is at its share and counts again and
    // again (every look at one of those hosts) between its renewals.
    await store.replicas.heartbeat('other', 600_000)
    for (const h of ['h3', 'h4', 'h5']) await store.leases.tryAcquire(h, 'other', 600_000)
    const b = new Reconciler({ store, hosts, holder: 'b', leaseTtlMs: TTL_MS, resyncMs: 100, leaseShareSlack: 0 })
    b.start()
    t.teardown(() => b.stop())
    await until('b holds its share', async () => b.heldHosts().length === 3)
    const bad: string[] = []
    const end = Date.now() + 2 * TTL_MS
    let looks = 0
    while (Date.now() < end) {
      const row = (await store.replicas.count('probe')).othersNextExpiry
      const leases = (await Promise.all(['h0', 'h1', 'h2'].map((h) => store.leases.get(h)))).filter((l) => l?.holder === 'b')
      const first = Math.min(...leases.map((l) => l!.expiresAt.getTime()))
      // 'other' expires in ten minutes: the earliest other row seen by 'probe' is b's.
      if (row && leases.length === 3 && row.getTime() > first) bad.push(`row ${row.toISOString()} > lease ${new Date(first).toISOString()}`)
      looks++
      await new Promise((r) => setTimeout(r, 20))
    }
    t.ok(looks > 20, `looked ${looks} times over two lease times`)
    t.same(bad.slice(0, 5), [], "b's row always runs out before its leases")
  })
})
