/**
 * Retention of the store (src/store/retention.ts, docs/api.md (Events) Retention) on SQLite and PostgreSQL:
 * the event log and the audit trail keep the newest N and nothing older than the age limit, as a contiguous
 * suffix with its floor recorded and never without their newest row; finished journal entries and idempotency
 * keys are pruned the same way, planned journal entries never; compaction in small batches interleaves with
 * concurrent writers, none of which fails; two replicas compacting one database at once keep exactly the policy.
 */
import t, { type Test } from 'tap'
import { Retention, type RetentionOptions, type RetentionReport } from '../../src/store/retention.js'
import { createStore, type Store } from '../../src/store/store.js'
import { forEachDatabase, freshDatabase } from './pg-helper.js'
import { manualClock, openStore } from './store-fixture.js'

const OFF = { maxCount: 0, maxAgeMs: 0 }
const HOUR = 3_600_000

/** A Retention over `store` that prunes only what `o` names (everything else off). */
function retention(store: Store, o: Partial<Omit<RetentionOptions, 'store'>>): Retention {
  return new Retention({ store, events: OFF, audit: OFF, journal: OFF, idempotency: { maxCount: 0 }, intervalMs: 60_000, ...o })
}

/** Appends `n` events of host h1, one statement per hundred; returns their seqs in order. */
async function appendEvents(store: Store, n: number, name = 'e'): Promise<number[]> {
  const before = await store.events.lastSeq()
  await store.events.appendMany(Array.from({ length: n }, (_, i) => ({ host: 'h1', kind: 'mdev', name: `${name}${i}`, type: 'MdevUpdated' })))
  return (await allEvents(store)).filter((s) => s > before)
}

/** Every stored seq, ascending. */
async function allEvents(store: Store): Promise<number[]> {
  const out: number[] = []
  for (;;) {
    const page = await store.events.list({ since: out.at(-1) ?? 0, limit: 1000 })
    out.push(...page.map((e) => e.seq))
    if (page.length < 1000) return out
  }
}

/** Every stored audit id, ascending. */
async function allAudit(store: Store): Promise<number[]> {
  const out: number[] = []
  for (;;) {
    const page = await store.audit.list({ afterId: out.at(-1) ?? 0, limit: 500 })
    out.push(...page.map((r) => r.id))
    if (page.length < 500) return out
  }
}

forEachDatabase(t, async (t, db) => {
  // Each test on a database of its own: the logs' contents and floors are what is checked.
  const fresh = (t: Test) => freshDatabase(t, db.provider)

  t.test('events: the count keeps the newest N in batches, records the floor, and a second pass removes nothing', async (t) => {
    const store = await openStore(t, await fresh(t))
    const seqs = await appendEvents(store, 30)
    const r = await retention(store, { events: { maxCount: 10, maxAgeMs: 0 }, batchSize: 7 }).runOnce()
    t.equal(r.deleted.events, 20)
    t.ok(r.batches >= 3, `${r.batches} batches of at most 7`)
    t.same(await allEvents(store), seqs.slice(-10), 'the newest 10, nothing else')
    t.equal(r.floors.events, seqs[19], 'floor: the newest seq removed')
    t.equal(await store.events.floor(), seqs[19])
    t.equal(await store.events.lastSeq(), seqs[29], 'the position of new watchers is unchanged')
    t.same(
      (await store.events.list({ since: 0 })).map((e) => e.seq),
      seqs.slice(-10),
    )
    const again = await retention(store, { events: { maxCount: 10, maxAgeMs: 0 } }).runOnce()
    t.equal(again.deleted.events, 0)
    t.equal(again.floors.events, seqs[19])
  })

  t.test('events: the age limit drops what is older, in seq order, and never the newest event', async (t) => {
    const clock = manualClock()
    const store = await openStore(t, await fresh(t), { clock: clock.now })
    const old = await appendEvents(store, 5, 'old')
    clock.advance(2 * HOUR)
    const young = await appendEvents(store, 5, 'young')
    clock.advance(30 * 60_000)
    const policy = { events: { maxCount: 0, maxAgeMs: HOUR } }
    t.equal((await retention(store, policy).runOnce()).deleted.events, 5, 'the five events two hours old')
    t.same(await allEvents(store), young)
    t.equal(await store.events.floor(), old[4])
    clock.advance(10 * HOUR)
    t.equal((await retention(store, policy).runOnce()).deleted.events, 4, 'everything is too old: all but the newest go')
    t.same(await allEvents(store), [young[4]])
    t.equal(await store.events.lastSeq(), young[4])
    t.equal((await retention(store, policy).runOnce()).deleted.events, 0, 'the newest event stays for ever')
    const next = await store.events.append({ host: 'h1', kind: 'host', name: 'h1', type: 'HostBooted' })
    t.ok(next.seq > young[4]!, 'seqs go on after it')
  })

  t.test('audit records: count and age, whichever removes more', async (t) => {
    const clock = manualClock()
    const store = await openStore(t, await fresh(t), { clock: clock.now })
    const add = async (n: number) => {
      for (let i = 0; i < n; i++) await store.audit.append({ actor: 'a', action: 'mdev.create', target: `t${i}`, outcome: 'ok' })
    }
    await add(8)
    clock.advance(3 * HOUR)
    await add(8)
    const ids = await allAudit(store)
    t.equal(ids.length, 16)
    const byAge = await retention(store, { audit: { maxCount: 12, maxAgeMs: HOUR }, batchSize: 3 }).runOnce()
    t.equal(byAge.deleted.audit, 8, 'the age limit removes more than the count would (4)')
    t.same(await allAudit(store), ids.slice(8))
    const byCount = await retention(store, { audit: { maxCount: 5, maxAgeMs: HOUR } }).runOnce()
    t.equal(byCount.deleted.audit, 3)
    t.same(await allAudit(store), ids.slice(11))
    t.equal(byCount.floors.audit, ids[10])
    t.equal(await store.audit.floor(), ids[10])
  })

  t.test('journal: finished entries by count and age; planned entries never', async (t) => {
    const clock = manualClock()
    const store = await openStore(t, await fresh(t), { clock: clock.now })
    const plan = (id: string, n: number) =>
      store.journal.append(Array.from({ length: n }, (_, step) => ({ host: 'h1', reconcileId: id, step, operation: { op: 'x' } })))
    const a = await plan('r1', 6)
    await store.journal.finish(a.map((e, i) => ({ id: e.id, state: i % 2 ? ('failed' as const) : ('done' as const) })))
    const open = await plan('r2', 3)
    clock.advance(2 * HOUR)
    const b = await plan('r3', 6)
    await store.journal.finish(b.map((e) => ({ id: e.id, state: 'done' as const })))
    const r = await retention(store, { journal: { maxCount: 4, maxAgeMs: HOUR }, batchSize: 2 }).runOnce()
    t.equal(r.deleted.journal, 8, 'r1 by age, the two oldest of r3 by count')
    t.same(
      (await store.journal.listOpen('h1')).map((e) => e.id),
      open.map((e) => e.id),
      'planned entries are kept, however old',
    )
    clock.advance(10 * HOUR)
    t.equal((await retention(store, { journal: { maxCount: 0, maxAgeMs: HOUR } }).runOnce()).deleted.journal, 4)
    t.equal((await store.journal.listOpen('h1')).length, 3)
  })

  t.test('idempotency keys: expired ones go, and beyond the count those expiring first', async (t) => {
    const clock = manualClock()
    const store = await openStore(t, await fresh(t), { clock: clock.now })
    const put = (key: string, ttlMs: number) => store.idempotency.put({ scope: 's', key, requestHash: 'h', responseStatus: 201, responseBody: { key }, ttlMs })
    await put('short', HOUR)
    for (let i = 0; i < 5; i++) await put(`k${i}`, 10 * HOUR + i * 60_000)
    clock.advance(2 * HOUR)
    const r = await retention(store, { idempotency: { maxCount: 3 }, batchSize: 2 }).runOnce()
    t.equal(r.deleted.idempotency, 3, 'the expired key, then the two live keys expiring first')
    t.equal(await store.idempotency.get('s', 'k0'), null)
    t.equal(await store.idempotency.get('s', 'k1'), null)
    for (const k of ['k2', 'k3', 'k4']) t.ok(await store.idempotency.get('s', k), `${k} kept`)
    t.equal((await retention(store, { idempotency: { maxCount: 0 } }).runOnce()).deleted.idempotency, 0, 'no limit: nothing live goes')
  })

  t.test('writers are not blocked: compaction in small batches interleaves with concurrent writers, none fails', async (t) => {
    const store = await openStore(t, await fresh(t))
    const seeds = await appendEvents(store, 300, 'seed')
    const keep = 50
    const r = retention(store, { events: { maxCount: keep, maxAgeMs: 0 }, audit: { maxCount: keep, maxAgeMs: 0 }, batchSize: 10 })
    let compacting = true
    let during = 0
    const failures: unknown[] = []
    const written: number[] = []
    // Four writers, each a transaction of an event and an audit record (what every mutation stores), until compaction ends.
    const writer = async (w: number) => {
      for (let i = 0; compacting || i < 5; i++) {
        try {
          const seq = await store.transaction(async (tx) => {
            await tx.audit.append({ actor: `w${w}`, action: 'mdev.update', target: `t${i}`, outcome: 'ok' })
            return (await tx.events.append({ host: 'h1', kind: 'mdev', name: `w${w}.${i}`, type: 'MdevUpdated' })).seq
          })
          written.push(seq)
          if (compacting) during++
        } catch (e) {
          failures.push(e)
        }
      }
    }
    const writers = [0, 1, 2, 3].map(writer)
    let batches = 0
    for (let pass = 0; pass < 3; pass++) batches += (await r.runOnce()).batches
    compacting = false
    await Promise.all(writers)
    t.same(failures, [], 'no write failed')
    t.ok(batches > 3, `${batches} compaction batches`)
    t.ok(during > 0, `${during} writes were acknowledged while compaction ran`)
    await r.runOnce()
    const kept = await allEvents(store)
    t.equal(kept.length, keep, 'after a last pass: exactly the newest 50')
    const newest = [...seeds, ...written].sort((a, b) => a - b).slice(-keep)
    t.same(kept, newest, 'the newest 50 written, all there')
    t.equal((await allAudit(store)).length, keep)
  })

  t.test('two replicas compacting one database at once: no error, exactly the policy, one floor', async (t) => {
    const shared = await fresh(t)
    const a = await openStore(t, shared)
    const b = await createStore(shared.url)
    t.teardown(() => b.close())
    const seqs = await appendEvents(a, 600)
    const policy = { events: { maxCount: 100, maxAgeMs: 0 }, batchSize: 25 }
    const reports = await Promise.all([retention(a, policy).runOnce(), retention(b, policy).runOnce(), retention(a, policy).runOnce()])
    t.equal(
      reports.reduce((n, r) => n + r.deleted.events, 0),
      500,
      'every removed event counted once',
    )
    t.same(await allEvents(b), seqs.slice(-100))
    t.equal(await a.events.floor(), seqs[499])
    t.equal(await b.events.floor(), seqs[499])
  })

  t.test('in the background: a pass at start and every interval, told through onPass; stop ends them', async (t) => {
    const store = await openStore(t, await fresh(t))
    const seqs = await appendEvents(store, 20)
    const reports: RetentionReport[] = []
    const r = retention(store, { events: { maxCount: 5, maxAgeMs: 0 }, intervalMs: 20, onPass: (x) => void reports.push(x) })
    r.start()
    const end = Date.now() + 15_000
    while (reports.length < 3 && Date.now() < end) await new Promise((resolve) => setTimeout(resolve, 5))
    await r.stop()
    t.ok(reports.length >= 3, `${reports.length} passes`)
    t.equal(reports[0]!.deleted.events, 15, 'the first pass compacted')
    t.same(
      reports.slice(1).map((x) => x.deleted.events),
      reports.slice(1).map(() => 0),
      'the next ones had nothing left to do',
    )
    t.same(r.stats(), { events: 15, audit: 0, journal: 0, idempotency: 0 })
    const after = reports.length
    await new Promise((resolve) => setTimeout(resolve, 60))
    t.equal(reports.length, after, 'no pass after stop')
    t.same(await allEvents(store), seqs.slice(-5))
    t.throws(() => retention(store, { events: { maxCount: -1, maxAgeMs: 0 } }), RangeError)
    t.throws(() => retention(store, { intervalMs: 0 }), RangeError)
    t.throws(() => retention(store, { batchSize: 0 }), RangeError)
  })
})
