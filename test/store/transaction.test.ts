import t from 'tap'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { ApmatrixError } from '../../src/domain/errors.js'
import { createStore } from '../../src/store/store.js'
import { forEachDatabase } from './pg-helper.js'
import { addHost, codeOf, openStore } from './store-fixture.js'

const spec = { adapters: [1], domains: [2], controlDomains: [], state: 'started' as const }

forEachDatabase(t, async (t, db) => {
  const store = await openStore(t, db)
  await addHost(store, 'local')

  t.test('object + event + audit commit together', async (t) => {
    const seq = await store.transaction(async (tx) => {
      const { mdev } = await tx.mdevs.create({ host: 'local', uuid: 'u-ok', spec })
      const e = await tx.events.append({ host: 'local', kind: 'mdev', name: mdev.uuid, type: 'MdevDefined' })
      await tx.audit.append({ actor: 'alice', action: 'mdev.create', target: `hosts/local/mdevs/${mdev.uuid}`, outcome: 'ok' })
      return e.seq
    })
    t.equal((await store.mdevs.get('local', 'u-ok')).uuid, 'u-ok')
    t.same(
      (await store.events.list({ host: 'local' })).map((e) => e.seq),
      [seq],
    )
    t.equal((await store.audit.list({ target: 'hosts/local/mdevs/u-ok' })).length, 1)
  })

  t.test('an error after the writes rolls everything back (nothing half-stored)', async (t) => {
    const events = (await store.events.list()).length
    const audits = (await store.audit.list()).length
    const err = await store
      .transaction(async (tx) => {
        await tx.mdevs.create({ host: 'local', uuid: 'u-rollback', spec })
        await tx.masks.set('local', { apmask: `0x${'f'.repeat(64)}`, aqmask: `0x${'f'.repeat(64)}` })
        await tx.events.append({ host: 'local', kind: 'mdev', name: 'u-rollback', type: 'MdevDefined' })
        await tx.audit.append({ actor: 'alice', action: 'mdev.create', target: 'x', outcome: 'ok' })
        throw new ApmatrixError('APQN_IN_USE', 'admission said no')
      })
      .catch((e: unknown) => e)
    t.equal((err as ApmatrixError).code, 'APQN_IN_USE', 'the ApmatrixError reaches the caller unchanged')
    t.equal(await codeOf(store.mdevs.get('local', 'u-rollback')), 'NOT_FOUND')
    t.equal(await store.masks.get('local'), null)
    t.equal((await store.events.list()).length, events)
    t.equal((await store.audit.list()).length, audits)
  })

  t.test('a store error inside a transaction rolls back the earlier writes', async (t) => {
    const code = await codeOf(
      store.transaction(async (tx) => {
        await tx.mdevs.create({ host: 'local', uuid: 'u-half', spec })
        await tx.mdevs.create({ host: 'nohost', uuid: 'u-half', spec })
      }),
    )
    t.equal(code, 'NOT_FOUND')
    t.equal(await codeOf(store.mdevs.get('local', 'u-half')), 'NOT_FOUND')
  })

  t.test('reads outside a transaction never see its uncommitted writes', async (t) => {
    let release!: () => void
    const gate = new Promise<void>((r) => (release = r))
    let inside!: () => void
    const written = new Promise<void>((r) => (inside = r))
    const tx = store.transaction(async (tx) => {
      await tx.mdevs.create({ host: 'local', uuid: 'u-pending', spec })
      inside()
      await gate
      throw new Error('rollback')
    })
    await written
    const read = codeOf(store.mdevs.get('local', 'u-pending'))
    release()
    await t.rejects(tx, /rollback/)
    t.equal(await read, 'NOT_FOUND')
  })

  t.test('close is idempotent; a closed store answers UNAVAILABLE', async (t) => {
    const s = await createStore(db.url)
    await s.ping()
    await s.close()
    await s.close()
    t.equal(await codeOf(s.hosts.list()), 'UNAVAILABLE')
  })
})

t.test('database unreachable: UNAVAILABLE from every entry point', async (t) => {
  const s = await createStore('postgresql://postgres@127.0.0.1:1/nothing')
  t.teardown(() => s.close())
  t.equal(await codeOf(s.ping()), 'UNAVAILABLE')
  t.equal(await codeOf(s.mdevs.get('local', 'u')), 'UNAVAILABLE')
  t.equal(await codeOf(s.mdevs.list('local')), 'UNAVAILABLE')
  t.equal(await codeOf(s.events.append({ host: 'h', kind: 'host', name: 'h', type: 'HostBooted' })), 'UNAVAILABLE')
  t.equal(await codeOf(s.transaction(async (tx) => tx.hosts.list())), 'UNAVAILABLE')
  t.equal(await codeOf(s.leases.tryAcquire('h', 'r1', 1000)), 'UNAVAILABLE')
})

t.test('sqlite file that cannot be opened: UNAVAILABLE', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'apmatrix-unavail-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  fs.mkdirSync(path.join(dir, 'is-a-directory.db'))
  const s = await createStore(`file:${path.join(dir, 'is-a-directory.db')}`)
  t.teardown(() => s.close())
  t.equal(await codeOf(s.hosts.list()), 'UNAVAILABLE')
})
