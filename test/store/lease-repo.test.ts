import t from 'tap'
import { forEachDatabase } from './pg-helper.js'
import { codeOf, manualClock, openStore } from './store-fixture.js'

forEachDatabase(t, async (t, db) => {
  const clock = manualClock()
  const store = await openStore(t, db, { clock: clock.now })
  const TTL = 10_000

  t.test('acquire, hold, expire, fence', async (t) => {
    const a1 = await store.leases.tryAcquire('h1', 'replica-a', TTL)
    t.same({ acquired: a1.acquired, token: a1.fencingToken }, { acquired: true, token: 1 })
    const b1 = await store.leases.tryAcquire('h1', 'replica-b', TTL)
    t.same({ acquired: b1.acquired, holder: b1.holder, token: b1.fencingToken }, { acquired: false, holder: 'replica-a', token: 1 })
    clock.advance(TTL / 2)
    const a2 = await store.leases.tryAcquire('h1', 'replica-a', TTL)
    t.same({ acquired: a2.acquired, token: a2.fencingToken }, { acquired: true, token: 1 }, 're-acquire by the holder extends, same token')
    t.same(await store.leases.renew('h1', 'replica-a', 1, TTL), new Date(clock.now().getTime() + TTL), 'renewed: the new expiry')
    t.equal(await store.leases.renew('h1', 'replica-b', 1, TTL), null, 'not the holder')
    await store.leases.assertHeld('h1', 'replica-a', 1)

    clock.advance(TTL + 1)
    t.equal(await store.leases.renew('h1', 'replica-a', 1, TTL), null, 'an expired lease cannot be renewed')
    const b2 = await store.leases.tryAcquire('h1', 'replica-b', TTL)
    t.same({ acquired: b2.acquired, token: b2.fencingToken }, { acquired: true, token: 2 }, 'expired: taken over with a higher token')
    t.equal(await codeOf(store.leases.assertHeld('h1', 'replica-a', 1)), 'UNAVAILABLE', 'the old holder is fenced off')
    t.equal(await store.leases.release('h1', 'replica-a', 1), false)
    t.equal(await store.leases.release('h1', 'replica-b', 2), true)
    const a3 = await store.leases.tryAcquire('h1', 'replica-a', TTL)
    t.same({ acquired: a3.acquired, token: a3.fencingToken }, { acquired: true, token: 3 }, 'released: next acquisition gets a new token')
    clock.advance(TTL + 1)
    const a4 = await store.leases.tryAcquire('h1', 'replica-a', TTL)
    t.equal(a4.fencingToken, 4, 'the same holder re-acquiring after expiry also gets a new token')
    const row = await store.leases.get('h1')
    t.equal(row?.holder, 'replica-a')
    t.equal(row?.fencingToken, 4)
    t.equal(await store.leases.get('never'), null)
  })

  t.test('racing replicas: exactly one wins a free lease and an expired one', async (t) => {
    const race = () => Promise.all(Array.from({ length: 10 }, (_, i) => store.leases.tryAcquire('h2', `r${i}`, TTL)))
    const first = await race()
    t.equal(first.filter((r) => r.acquired).length, 1)
    t.equal(first.find((r) => r.acquired)?.fencingToken, 1)
    clock.advance(TTL + 1)
    const second = await race()
    const winners = second.filter((r) => r.acquired)
    t.equal(winners.length, 1, 'one winner after expiry')
    t.equal(winners[0].fencingToken, 2)
    t.ok(
      second.every((r) => r.fencingToken === 2 && r.holder === winners[0].holder),
      'losers see the winner',
    )
  })
})
