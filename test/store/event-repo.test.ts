import t from 'tap'
import { setTimeout as sleep } from 'node:timers/promises'
import { forEachDatabase } from './pg-helper.js'
import { codeOf, openStore } from './store-fixture.js'

forEachDatabase(t, async (t, db) => {
  const store = await openStore(t, db)

  t.test('append returns increasing seqs; list filters by since, host, kinds, limit', async (t) => {
    t.equal(await store.events.lastSeq(), 0)
    const a = await store.events.append({
      host: 'h1',
      kind: 'mdev',
      name: 'u1',
      type: 'MdevDefined',
      message: 'defined',
      requestId: 'r1',
      actor: 'alice',
      data: { gen: 1 },
    })
    const b = await store.events.append({ host: 'h2', kind: 'masks', name: 'h2', type: 'MasksChanged' })
    const c = await store.events.append({ host: 'h1', kind: 'queue', name: '05.0004', type: 'QueueBound' })
    t.ok(a.seq < b.seq && b.seq < c.seq)
    t.equal(await store.events.lastSeq(), c.seq)
    t.same(a.data, { gen: 1 })
    t.equal(a.actor, 'alice')
    t.equal(b.requestId, null)
    t.equal(b.message, '')
    t.same(
      (await store.events.list()).map((e) => e.seq),
      [a.seq, b.seq, c.seq],
    )
    t.same(
      (await store.events.list({ since: a.seq })).map((e) => e.seq),
      [b.seq, c.seq],
    )
    t.same(
      (await store.events.list({ host: 'h1' })).map((e) => e.seq),
      [a.seq, c.seq],
    )
    t.same(
      (await store.events.list({ host: 'h1', kinds: ['queue', 'masks'] })).map((e) => e.seq),
      [c.seq],
    )
    t.same(
      (await store.events.list({ limit: 2 })).map((e) => e.seq),
      [a.seq, b.seq],
    )
    t.equal(await codeOf(store.events.list({ limit: 1001 })), 'INVALID_ARGUMENT')
  })

  t.test('50 concurrent appends (each committing late): a resuming reader sees every seq once, in order', async (t) => {
    const start = await store.events.lastSeq()
    let writing = true
    const seen: number[] = []
    // The reader resumes from the last seq it saw, as a watch stream does; a seq that became
    // visible after a higher one (out-of-order commit) would be skipped and missing at the end.
    const reader = (async () => {
      let since = start
      for (;;) {
        const done = !writing
        const page = await store.events.list({ since, limit: 1000 })
        for (const e of page) seen.push(e.seq)
        if (page.length) since = page[page.length - 1].seq
        if (done) return
        await sleep(1)
      }
    })()
    const appended = await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        store.transaction(async (tx) => {
          const e = await tx.events.append({ host: 'h3', kind: 'mdev', name: `u${i}`, type: 'MdevUpdated' })
          await sleep(Math.random() * 8) // keep the transaction open after the insert
          return e.seq
        }),
      ),
    )
    writing = false
    await reader
    const sorted = [...appended].sort((x, y) => x - y)
    t.equal(new Set(appended).size, 50, 'distinct seqs')
    t.same(seen, sorted, 'the reader saw each appended seq exactly once, strictly increasing')
  })

  t.test('a rolled-back append leaves a gap, never a late event', async (t) => {
    const before = await store.events.lastSeq()
    await t.rejects(
      store.transaction(async (tx) => {
        await tx.events.append({ host: 'h4', kind: 'host', name: 'h4', type: 'HostBooted' })
        throw new Error('abort')
      }),
      /abort/,
    )
    const after = await store.events.append({ host: 'h4', kind: 'host', name: 'h4', type: 'HostBooted' })
    t.ok(after.seq > before)
    t.same(
      (await store.events.list({ since: before })).map((e) => e.seq),
      [after.seq],
    )
  })
})
