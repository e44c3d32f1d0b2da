/**
 * A change taken by a replica that does not hold the host's lease reaches the holder through the event log
 * (src/main.ts, docs/api.md (Reconcile) "Changes through any replica"), not at the holder's next resync. Two
 * services on one SQLite file, each with the emulated host `local` in its own process memory (what matters here
 * is who reconciles, not the bus), resync 10 minutes: A holds the lease, the PUT goes through B, and the device
 * must become Ready (as A reports it) long before any resync. Found by the fleet test: without it a change
 * through another replica waited for the holder's resync (default 30 s).
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import { loadConfig } from '../../src/config.js'
import { startService } from '../../src/main.js'
import { isReady, restClient, until } from '../scenario/rest-client.js'

const UUID = '1b000000-0000-4000-8000-000000000001'

t.test('a PUT through a replica that does not hold the host wakes the holder', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'apmatrix-xreplica-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const serve = async (replicaId: string) => {
    const svc = await startService(
      loadConfig(
        {
          databaseUrl: `file:${path.join(dir, 'db.sqlite')}`,
          http: '127.0.0.1:0',
          grpc: '127.0.0.1:0',
          logLevel: 'silent',
          hosts: 'local=spec-fixture',
          replicaId,
          resyncMs: '600000',
          leaseTtlMs: '60000',
        },
        {},
      ),
    )
    t.teardown(() => svc.close())
    return svc
  }
  const a = await serve('a')
  await until('A holds the lease of local', async () => a.reconciler.holds('local'), { timeoutMs: 30_000 })
  const b = await serve('b')
  const viaB = restClient(b.httpUrl)
  const put = await viaB('PUT', '/v1/hosts/local/desired', {
    body: {
      masks: { apmask: '-5' },
      mdevs: [{ uuid: UUID, spec: { adapters: [5], domains: [4], controlDomains: [], state: 'started' } }],
    },
  })
  t.equal(put.status, 200, `PUT through B: ${put.text.slice(0, 200)}`)
  t.notOk(b.reconciler.holds('local'), 'B does not hold the host')
  const viaA = restClient(a.httpUrl)
  // The bound is far below the resync (10 min): only the event log can have told A.
  const mdev = await until(
    'the device Ready on A',
    async () => {
      const r = await viaA('GET', `/v1/hosts/local/mdevs/${UUID}`)
      return r.status === 200 && isReady(r.body) ? r.body : undefined
    },
    { timeoutMs: 60_000, everyMs: 100 },
  )
  t.ok(isReady(mdev), 'A reconciled the change taken by B')
})
