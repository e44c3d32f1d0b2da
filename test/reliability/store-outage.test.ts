/**
 * The store goes away (a private PostgreSQL cluster this test starts, never the shared server): stopped (connections
 * refused), frozen (every cluster process SIGSTOPped: connections stay open and nothing answers) and cut
 * (pg_terminate_backend on every connection). Through the real `apmatrix serve` process over its sockets: a write
 * answers 503 UNAVAILABLE with Retry-After (never 500, never a hang past the store timeout plus a margin), /readyz
 * and gRPC health say not ready, and once the database is back the service accepts writes without a restart, with
 * every acknowledged write stored and nothing half-stored.
 */
import t from 'tap'
import { createStore } from '../../src/store/store.js'
import { requireOrSkip } from '../helpers/required.js'
import { privatePostgresMissing, startPrivatePostgres } from '../helpers/private-postgres.js'
import { until } from '../scenario/rest-client.js'
import { health, startOutageService } from './outage-kit.js'

const HOST = '/v1/hosts/local'
const STORE_TIMEOUT_MS = 1000
/** How long an answer may take during an outage before the test calls it a hang: the store timeout and a wide margin. */
const HANG_GUARD_MS = 15_000

/** A request that must answer (any status) before the hang guard: resolves to its status and body, or 'hang'. */
async function answered(p: Promise<{ status: number; body: any; headers: Headers }>) {
  let timer: NodeJS.Timeout | undefined
  const hang = new Promise<'hang'>((r) => {
    timer = setTimeout(() => r('hang'), HANG_GUARD_MS)
  })
  try {
    return await Promise.race([p, hang])
  } finally {
    clearTimeout(timer)
  }
}

const uuid = (i: number) => `${i.toString(16).padStart(8, '0')}-0000-4000-8000-000000000001`

requireOrSkip(
  t,
  'PostgreSQL stopped, frozen and cut: 503 within the store timeout, not ready meanwhile, back without a restart',
  privatePostgresMissing(),
  async (t) => {
    const pg = await startPrivatePostgres(t)
    const { cli, call, hc } = await startOutageService(t, pg.url, STORE_TIMEOUT_MS)

    const acknowledged: string[] = []
    let n = 0
    /** One create; remembers it when the service acknowledged it. */
    const create = async () => {
      const id = uuid(++n)
      const r = await answered(call('POST', `${HOST}/mdevs`, { body: { uuid: id, spec: { adapters: [], domains: [] } } }))
      if (r !== 'hang' && r.status === 201) acknowledged.push(id)
      return r
    }
    const created = await create()
    t.equal(created !== 'hang' && created.status, 201, 'a write before any outage')
    // Ready once this replica holds its host's lease (the first health refresh may come before that).
    await until('gRPC health SERVING at start', async () => ((await health(hc)) === 'SERVING' ? true : undefined), { timeoutMs: HANG_GUARD_MS })

    /** During an outage: a write answers 503 UNAVAILABLE with Retry-After, and readiness turns false on both transports. */
    const duringOutage = async (what: string) => {
      const w = await create()
      t.not(w, 'hang', `${what}: the write answered within ${HANG_GUARD_MS} ms`)
      if (w !== 'hang') {
        t.equal(w.status, 503, `${what}: the write answers 503 (${w.status} ${JSON.stringify(w.body)?.slice(0, 200)})`)
        t.equal(w.body?.code, 'UNAVAILABLE', `${what}: code UNAVAILABLE`)
        t.ok(Number(w.headers.get('retry-after')) > 0, `${what}: Retry-After`)
      }
      const r = await answered(call('GET', '/readyz'))
      t.ok(r !== 'hang' && r.status === 503, `${what}: /readyz is 503`)
      await until(`${what}: gRPC health NOT_SERVING`, async () => ((await health(hc)) === 'NOT_SERVING' ? true : undefined), { timeoutMs: HANG_GUARD_MS })
    }
    /** After it: writes are accepted again without a restart, and health is back. */
    const recovered = async (what: string) => {
      const began = Date.now()
      await until(
        `${what}: a write is accepted again`,
        async () => {
          const r = await create()
          return r !== 'hang' && r.status === 201 ? true : undefined
        },
        { timeoutMs: 60_000, everyMs: 200 },
      )
      t.comment(`${what}: writes accepted again ${Date.now() - began} ms after the database came back`)
      await until(`${what}: gRPC health SERVING`, async () => ((await health(hc)) === 'SERVING' ? true : undefined), { timeoutMs: HANG_GUARD_MS })
      t.pass(`${what}: recovered without a restart`)
    }

    pg.freeze()
    await duringOutage('frozen (SIGSTOP)')
    pg.thaw()
    await recovered('frozen (SIGSTOP)')

    await pg.stop()
    await duringOutage('stopped')
    await pg.start()
    await recovered('stopped')

    pg.terminateConnections()
    const afterCut = await create()
    t.ok(afterCut !== 'hang' && (afterCut.status === 201 || afterCut.status === 503), 'cut connections: the next write is stored or a clean 503, never a 500')
    await recovered('connections cut')

    t.equal(cli.dead, false, 'the service never exited')
    const store = await createStore(pg.url)
    t.teardown(() => store.close())
    const stored = new Set((await store.mdevs.listAll('local')).map((m) => m.uuid))
    t.same(
      acknowledged.filter((id) => !stored.has(id)),
      [],
      `every acknowledged write is stored (${acknowledged.length})`,
    )
    const events = await store.events.list({ host: 'local', limit: 1000 })
    const defined = new Set(events.filter((e) => e.type === 'MdevDefined').map((e) => e.name))
    t.same(
      [...stored].filter((id) => !defined.has(id)),
      [],
      'nothing half-stored: every stored device has the event of its transaction',
    )
  },
  'postgres',
)
