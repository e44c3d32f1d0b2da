/**
 * The SQLite write path (src/store/group-commit.ts, src/store/sqlite-direct.ts): every commit is flushed to
 * disk, the hot statements run on the adapter's connection directly, and transactions of one event-loop turn
 * share one commit, each whole or not at all, each acknowledged only once the shared commit returned. The same
 * transactions on PostgreSQL (one commit each) end the same way. A crash test of acknowledged writes is in
 * test/reliability/group-commit-crash.test.ts.
 */
import t from 'tap'
import { ApmatrixError } from '../../src/domain/errors.js'
import type { Db, DbTx } from '../../src/store/client.js'
import { RetryTransaction } from '../../src/store/context.js'
import { GroupCommit } from '../../src/store/group-commit.js'
import { forEachDatabase } from './pg-helper.js'
import { addHost, codeOf, openStore } from './store-fixture.js'

const spec = { adapters: [1], domains: [2], controlDomains: [], state: 'started' as const }
const uuid = (i: number) => `c0000000-0000-4000-8000-${i.toString(16).padStart(12, '0')}`

forEachDatabase(t, async (t, db) => {
  const store = await openStore(t, db)
  await addHost(store, 'local')

  t.test('how the store writes', async (t) => {
    const mode = await store.writeMode()
    if (db.provider === 'sqlite') {
      t.same(mode, { provider: 'sqlite', synchronous: 2, directSql: true, groupCommit: true }, 'durable commits (FULL), direct statements, shared commits')
    } else t.same(mode, { provider: 'postgres', synchronous: null, directSql: false, groupCommit: false })
  })

  t.test('transactions of one turn: each commits whole or not at all, a lost race runs again, an ack comes after the commit', async (t) => {
    const before = store.stats()
    const seenAtAck: boolean[] = []
    let raced = false
    const jobs = Array.from({ length: 10 }, (_, i) =>
      store.transaction(async (tx) => {
        const { mdev } = await tx.mdevs.create({ host: 'local', uuid: uuid(i), spec })
        await tx.events.append({ host: 'local', kind: 'mdev', name: mdev.uuid, type: 'MdevDefined' })
        if (i === 3) throw new ApmatrixError('APQN_IN_USE', 'admission said no, after writing')
        if (i === 6 && !raced) {
          raced = true
          throw new RetryTransaction('lost a race')
        }
        return mdev.uuid
      }),
    )
    // Each answer is checked the moment it arrives: the reader connection sees only committed data.
    const settled = await Promise.allSettled(
      jobs.map((j, i) => j.then(async (u) => (seenAtAck.push((await store.mdevs.list('local')).items.some((m) => m.uuid === uuid(i))), u))),
    )
    t.same(
      settled.map((s) => s.status),
      ['fulfilled', 'fulfilled', 'fulfilled', 'rejected', 'fulfilled', 'fulfilled', 'fulfilled', 'fulfilled', 'fulfilled', 'fulfilled'],
    )
    t.equal(((settled[3] as PromiseRejectedResult).reason as ApmatrixError).code, 'APQN_IN_USE', 'the refusal reaches its caller unchanged')
    t.ok(seenAtAck.length === 9 && seenAtAck.every(Boolean), 'every acknowledged write was committed when its caller heard of it')
    t.equal(await codeOf(store.mdevs.get('local', uuid(3))), 'NOT_FOUND', 'the refused transaction left nothing')
    t.equal((await store.mdevs.get('local', uuid(6))).uuid, uuid(6), 'the one that lost a race ran again and committed')
    const events = (await store.events.list({ host: 'local', limit: 1000 })).filter((e) => e.type === 'MdevDefined').map((e) => e.name)
    t.same(events.sort(), [0, 1, 2, 4, 5, 6, 7, 8, 9].map(uuid), 'one event per committed transaction, none of the refused one')
    const after = store.stats()
    t.equal(after.jobs - before.jobs, 10, 'ten transactions asked for')
    if (db.provider === 'sqlite') t.equal(after.transactions - before.transactions, 1, 'SQLite: they shared one database transaction and one commit')
    else t.ok(after.transactions - before.transactions >= 10, 'PostgreSQL: one commit each')
  })

  t.test('transactions in sequence each get their own commit, in order', async (t) => {
    const before = store.stats()
    for (let i = 20; i < 23; i++) await store.transaction((tx) => tx.mdevs.create({ host: 'local', uuid: uuid(i), spec }))
    t.equal(store.stats().transactions - before.transactions, 3)
    t.same(
      (await store.mdevs.listAll('local')).filter((m) => m.uuid >= uuid(20)).map((m) => m.uuid),
      [20, 21, 22].map(uuid),
    )
  })
})

/** The batching itself, against a database whose COMMIT fails (the database is the boundary faked here). */
t.test('a failed commit fails every transaction of the batch, none is acknowledged', async (t) => {
  const ran: string[] = []
  const db = {
    $transaction: async (fn: (tx: DbTx) => Promise<unknown>) => {
      await fn({} as DbTx)
      throw Object.assign(new Error('disk I/O error'), { code: 'SQLITE_IOERR' })
    },
  } as unknown as Db
  const group = new GroupCommit(db, {
    maxBatch: 64,
    maxAttempts: 3,
    txOptions: { maxWait: 1000, timeout: 1000 },
    savepoint: async (_tx, sql) => void ran.push(sql),
    onBatch: () => undefined,
    mapError: (e) => ((e as { code?: string }).code === 'SQLITE_IOERR' ? new ApmatrixError('UNAVAILABLE', 'store unavailable') : e),
  })
  const results = await Promise.allSettled([group.submit('a', async () => 'a'), group.submit('b', async () => 'b'), group.submit('c', async () => 'c')])
  t.same(
    results.map((r) => (r.status === 'rejected' ? (r.reason as ApmatrixError).code : r.value)),
    ['UNAVAILABLE', 'UNAVAILABLE', 'UNAVAILABLE'],
  )
  t.same(
    ran,
    ['SAVEPOINT apmatrix_job', 'RELEASE apmatrix_job', 'SAVEPOINT apmatrix_job', 'RELEASE apmatrix_job', 'SAVEPOINT apmatrix_job', 'RELEASE apmatrix_job'],
    'one batch, a savepoint each',
  )
})
