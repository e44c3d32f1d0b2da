/**
 * The event hub and retention (src/events/hub.ts, src/store/retention.ts), on SQLite and PostgreSQL: a start
 * position below the compaction floor is GONE with the oldest position, 0 starts at the floor; a subscriber
 * that compaction overtakes while it catches up from the store, or that the poller finds overtaken, ends with
 * GONE having been given a prefix of the log with no hole; bookmarks arrive on a subscription that sees no
 * event, in order with the events, and resuming from one loses nothing.
 */
import t, { type Test } from 'tap'
import { ApmatrixError } from '../../src/domain/errors.js'
import { EventHub, type EventHubOptions } from '../../src/events/hub.js'
import type { Store } from '../../src/store/index.js'
import { forEachDatabase, freshDatabase } from '../store/pg-helper.js'
import { compactEvents, openStore } from '../store/store-fixture.js'

async function until(cond: () => boolean, what: string, ms = 15_000): Promise<void> {
  const end = Date.now() + ms
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 5))
  }
}

async function append(store: Store, n: number, host = 'h1'): Promise<number[]> {
  const before = await store.events.lastSeq()
  await store.events.appendMany(Array.from({ length: n }, (_, i) => ({ host, kind: 'mdev', name: `n${i}`, type: 'MdevUpdated' })))
  const out: number[] = []
  for (;;) {
    const page = await store.events.list({ since: out.at(-1) ?? before, limit: 1000 })
    out.push(...page.map((e) => e.seq))
    if (page.length < 1000) return out
  }
}

function hubOf(t: Test, store: Store, o: Omit<EventHubOptions, 'source'> = {}): EventHub {
  const hub = new EventHub({ source: store.events, pollIntervalMs: 10, ...o })
  t.teardown(() => hub.close())
  return hub
}

function gone(err: unknown): { code?: string; oldestSeq?: number } {
  return err instanceof ApmatrixError ? { code: err.code, ...(err.oldestSeq !== undefined ? { oldestSeq: err.oldestSeq } : {}) } : { code: String(err) }
}

forEachDatabase(t, async (t, db) => {
  const fresh = async (t: Test) => openStore(t, await freshDatabase(t, db.provider))

  t.test('start positions: below the floor GONE with the oldest position, at the floor fine, 0 = the floor', async (t) => {
    const store = await fresh(t)
    const seqs = await append(store, 40)
    const floor = await compactEvents(store, 10)
    t.equal(floor, seqs[29])
    const hub = hubOf(t, store)
    await hub.start()
    const err = await hub.startPosition(seqs[5]!).catch((e: unknown) => e)
    t.same(gone(err), { code: 'GONE', oldestSeq: floor })
    t.match((err as Error).message, /re-list/)
    t.equal(await hub.startPosition(floor), floor)
    t.equal(await hub.startPosition(seqs[35]!), seqs[35])
    t.equal(await hub.startPosition(0), floor, '0: every event kept')
  })

  t.test('a subscriber overtaken while it catches up from the store: a prefix without a hole, then GONE', async (t) => {
    const store = await fresh(t)
    const seqs = await append(store, 2500)
    const hub = hubOf(t, store, { ringSize: 10 })
    await hub.start()
    const got: number[] = []
    const ended: unknown[] = []
    let release!: () => void
    const gate = new Promise<void>((r) => {
      release = r
    })
    hub.subscribe(
      { sinceSeq: await hub.startPosition(0) },
      (e) => {
        got.push(e.seq)
        // Held on its first event with the first page of the store read queued behind it.
        if (got.length === 1) return gate
      },
      (err) => ended.push(err),
    )
    await until(() => got.length === 1, 'the first event')
    const floor = await compactEvents(store, 200)
    release()
    await until(() => ended.length === 1, 'the end')
    t.same(gone(ended[0]), { code: 'GONE', oldestSeq: floor })
    t.ok(got.length > 0 && got.length < seqs.length, `${got.length} events before the end`)
    t.same(got, seqs.slice(0, got.length), 'what it was given is the log from its start, without a hole')
    t.ok(got.at(-1)! < floor, 'and it was stopped before the hole')
  })

  t.test('the poller finds retention removed events it had not dispatched: its live subscribers end with GONE', async (t) => {
    const store = await fresh(t)
    await append(store, 5)
    // No periodic poll: the test decides when the hub reads the log.
    const hub = hubOf(t, store, { pollIntervalMs: 3_600_000 })
    await hub.start()
    const live: number[] = []
    const ended: unknown[] = []
    hub.subscribe(
      {},
      (e) => void live.push(e.seq),
      (err) => ended.push(err),
    )
    await hub.flush()
    const seqs = await append(store, 50)
    const floor = await compactEvents(store, 10)
    await hub.flush()
    await until(() => ended.length === 1, 'the live subscriber ended')
    t.same(live, [], 'it was given nothing of the removed events')
    t.same(gone(ended[0]), { code: 'GONE', oldestSeq: floor })
    const after: number[] = []
    hub.subscribe({}, (e) => void after.push(e.seq))
    const more = await append(store, 3)
    await hub.flush()
    await until(() => after.length === 3, 'a new subscriber gets what follows')
    t.same(after, more)
    t.equal(floor, seqs[39])
  })

  t.test('bookmarks: an idle subscription learns the position, in order with its events; resuming from one loses nothing', async (t) => {
    const store = await fresh(t)
    const hub = hubOf(t, store)
    await hub.start()
    const items: Array<{ event?: number; bookmark?: number }> = []
    hub.subscribe({ host: 'other', bookmarkMs: 30, onBookmark: (seq) => void items.push({ bookmark: seq }) }, (e) => void items.push({ event: e.seq }))
    const busy = await append(store, 20, 'h1')
    await until(() => items.some((i) => i.bookmark === busy.at(-1)), 'a bookmark at the newest event')
    t.notOk(
      items.some((i) => i.event !== undefined),
      'no event of another host',
    )
    const [mine] = await append(store, 1, 'other')
    await append(store, 5, 'h1')
    await until(() => items.some((i) => i.event === mine) && (items.at(-1)?.bookmark ?? 0) > mine!, 'its event, then a later bookmark')
    // Positions never go back, and no event follows a bookmark at or past its seq.
    let position = 0
    for (const i of items) {
      const at = i.event ?? i.bookmark!
      t.ok(at >= position && (i.event === undefined || at > position), `${JSON.stringify(i)} after position ${position}`)
      position = at
    }
    const resumed: number[] = []
    const from = items.at(-1)!.bookmark!
    hub.subscribe({ host: 'other', sinceSeq: from }, (e) => void resumed.push(e.seq))
    const [next] = await append(store, 1, 'other')
    await until(() => resumed.length === 1, 'the next event after the bookmark')
    t.same(resumed, [next])
    t.throws(() => hub.subscribe({ bookmarkMs: 0, onBookmark: () => undefined }, () => undefined), RangeError)
    t.throws(() => hub.subscribe({ bookmarkMs: 10 }, () => undefined), RangeError, 'bookmarks need a listener')
  })
})
