/**
 * The outage matrix (issue 11 §2): three ways the PostgreSQL store goes away, each for 1 s, 5 s and 30 s. Each way
 * has its own real `apmatrix serve` process on its own private cluster this test starts (never the shared server),
 * and the three run side by side (about 50 s instead of 120 s one after the other):
 * - refused: the cluster is stopped (`pg_ctl stop -m fast`): connections are refused;
 * - dropped: writes are first caught inside their transactions (a test session holds the event log's table lock,
 *   so a device row is inserted and its event waits), then every connection is terminated (pg_terminate_backend)
 *   and the database refuses new ones (`ALLOW_CONNECTIONS false`) for the duration;
 * - blackholed: the postmaster and every backend are SIGSTOPped: connections stay open and nothing answers.
 * Two writers (device creates with labels), a reader (a device and the masks, from the read cache), /readyz and
 * gRPC health run through each fault. Checked per cell: every answer is a success or a 503 UNAVAILABLE with
 * Retry-After (0 other 5xx), no request takes longer than the store timeout plus a margin, reads answer 200
 * (marked `Apmatrix-Stale` once the store failed them), readiness is off on both transports while the fault is
 * long enough to be seen, and writes are accepted again without a restart within 10 s. At the end, straight from
 * the database: every acknowledged write is stored with all its labels and its event, and no stored device lacks
 * either. The service runs with a 1 s store timeout, reads that go to the store when their copy is older than
 * 250 ms and gRPC health refreshed every 250 ms, so even a 1 s outage shows in every answer. A 1 s blackhole is
 * shorter than the client's bound (timeout + 1 s), so requests there may ride it out instead of failing: there a
 * 503, stale reads and not-ready are allowed, not required. The slowest request of each cell is printed.
 * APMATRIX_OUTAGE_CELLS=blackholed-5,refused-1 runs only those cells.
 */
import pg from 'pg'
import t, { type Test } from 'tap'
import { requireOrSkip } from '../helpers/required.js'
import { privatePostgresMissing, startPrivatePostgres, type PrivatePostgres } from '../helpers/private-postgres.js'
import { until } from '../scenario/rest-client.js'
import { health, probe, sameLabels, sleep, startOutageService, table, type Probe } from './outage-kit.js'

const HOST = '/v1/hosts/local'
const STORE_TIMEOUT_MS = 1000
/** No request may take longer than this: the store timeout, the client's extra second (src/store/client.ts) and a margin for a loaded machine. */
const LATENCY_BOUND_MS = STORE_TIMEOUT_MS + 1000 + 3000
const RECOVERY_BOUND_MS = 10_000
const READ_STALENESS_MS = 250
const HEALTH_INTERVAL_MS = 250
const DURATIONS = [1, 5, 30]
type Kind = 'refused' | 'dropped' | 'blackholed'
const KINDS: Kind[] = ['refused', 'dropped', 'blackholed']

const uuid = (i: number) => `${i.toString(16).padStart(8, '0')}-0000-4000-8000-00000000000c`

interface Sent {
  id: string
  labels: Record<string, string>
  probe: Probe
}

interface CellFigures {
  cell: string
  faults: string
  requests: number
  writes: number
  acked: number
  unavailable: number
  staleReads: number
  maxLatencyMs: number
  recoveryMs: number
  healthSeen: string
  slowest: string
  /** Acknowledged writes of the cell missing from the database (set after the stack's final check). */
  lost?: number
}

/** The "dropped" fault: writes caught mid-transaction, every connection terminated, new ones refused until healed. */
async function drop(p: PrivatePostgres): Promise<{ terminated: number; inTransaction: number; waitingOnLock: number }> {
  const admin = new pg.Client({ connectionString: p.url.replace(/\/postgres$/, '/template1') })
  await admin.connect()
  const locker = new pg.Client({ connectionString: p.url })
  await locker.connect()
  try {
    const lockerPid = (await locker.query('SELECT pg_backend_pid() AS pid')).rows[0].pid as number
    await locker.query('BEGIN')
    await locker.query('LOCK TABLE "Event" IN SHARE ROW EXCLUSIVE MODE')
    // The writers' transactions insert their device, then wait for this lock to append its event.
    let waitingOnLock = 0
    const end = Date.now() + 3000
    while (Date.now() < end) {
      const r = await admin.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = 'postgres' AND wait_event_type = 'Lock' AND pid <> $1", [
        lockerPid,
      ])
      waitingOnLock = r.rows[0].n
      if (waitingOnLock >= 1) break
      await sleep(10)
    }
    await admin.query('ALTER DATABASE postgres ALLOW_CONNECTIONS false')
    const r = await admin.query(
      `SELECT count(*) FILTER (WHERE xact_start IS NOT NULL)::int AS intx, count(pg_terminate_backend(pid))::int AS n
         FROM pg_stat_activity WHERE datname = 'postgres' AND pid <> $1 AND backend_type = 'client backend'`,
      [lockerPid],
    )
    return { terminated: r.rows[0].n, inTransaction: r.rows[0].intx, waitingOnLock }
  } finally {
    await locker.query('ROLLBACK').catch(() => undefined)
    await locker.end().catch(() => undefined)
    await admin.end().catch(() => undefined)
  }
}

async function undrop(p: PrivatePostgres): Promise<void> {
  const admin = new pg.Client({ connectionString: p.url.replace(/\/postgres$/, '/template1') })
  await admin.connect()
  try {
    await admin.query('ALTER DATABASE postgres ALLOW_CONNECTIONS true')
  } finally {
    await admin.end()
  }
}

/**
 * One kind of fault for each of `durations`, against its own private cluster and `apmatrix serve`, then the
 * database checks; the cells' figures go to `figures`. The three kinds run side by side (a cell's fault is
 * its own cluster's; no stack waits on another's), so the matrix takes about as long as its longest kind.
 */
async function stack(t: Test, kind: Kind, durations: number[], figures: CellFigures[]): Promise<void> {
  const pgc = await startPrivatePostgres(t)
  const { cli, call, hc } = await startOutageService(t, pgc.url, STORE_TIMEOUT_MS, {
    // Reads go to the store when their copy is older than this, so even a 1 s outage shows in their answers.
    APMATRIX_READ_MAX_STALENESS_MS: String(READ_STALENESS_MS),
    // gRPC health looks at the store this often, so even a 1 s outage shows there.
    APMATRIX_HEALTH_INTERVAL_MS: String(HEALTH_INTERVAL_MS),
  })
  await until('gRPC health SERVING at start', async () => (await health(hc)) === 'SERVING', { timeoutMs: 30_000 })

  const known = uuid(0xfffff)
  const first = await call('POST', `${HOST}/mdevs`, { body: { uuid: known, spec: { adapters: [], domains: [] }, labels: { cell: 'before' } } })
  t.equal(first.status, 201, 'a device to read during the outages')

  const sent: Sent[] = []
  const cells: CellFigures[] = []
  const all: Probe[] = []
  let n = 0

  const cell = async (t: Test, kind: Kind, seconds: number) => {
    const name = `${kind} ${seconds} s`
    const probes: Probe[] = []
    const record = (p: Probe) => {
      probes.push(p)
      all.push(p)
      return p
    }
    const write = async () => {
      const id = uuid(++n)
      const labels = { cell: `${kind}-${seconds}`, seq: String(n) }
      const p = record(await probe(call, 'write', 'POST', `${HOST}/mdevs`, { uuid: id, spec: { adapters: [], domains: [] }, labels }))
      sent.push({ id, labels, probe: p })
      return p
    }
    /** gRPC health answers, with when they came (the status is the server's at that moment). */
    const healthSeen: Array<{ at: number; status: string }> = []
    let stop = false
    const loop = async (body: () => Promise<unknown>) => {
      while (!stop) {
        await body()
        await sleep(50)
      }
    }
    const loops = [
      loop(write),
      loop(write),
      loop(async () => {
        record(await probe(call, 'read mdev', 'GET', `${HOST}/mdevs/${known}`))
        record(await probe(call, 'read masks', 'GET', `${HOST}/masks`))
      }),
      loop(async () => record(await probe(call, 'readyz', 'GET', '/readyz'))),
      loop(async () => {
        const status = await health(hc, LATENCY_BOUND_MS)
        healthSeen.push({ at: performance.now(), status })
      }),
    ]
    await sleep(300)
    let faults = ''
    if (kind === 'refused') {
      await pgc.stop()
      faults = 'cluster stopped'
    } else if (kind === 'blackholed') {
      pgc.freeze()
      faults = 'postmaster and backends SIGSTOPped'
    } else {
      const d = await drop(pgc)
      faults = `${d.terminated} connections terminated (${d.inTransaction} in a transaction, ${d.waitingOnLock} writes waiting mid-transaction), new ones refused`
    }
    // The fault holds for the whole duration from the moment it is complete (stopping a cluster takes a while).
    const faultAt = performance.now()
    await sleep(seconds * 1000)
    const healedStart = performance.now()
    if (kind === 'refused') await pgc.start()
    else if (kind === 'blackholed') pgc.thaw()
    else await undrop(pgc)
    const healedAt = performance.now()
    let recoveredAt = Number.NaN
    try {
      await until(
        `${name}: a write started after the fault ended to be accepted`,
        async () => {
          const ok = probes.find((p) => p.what === 'write' && p.startedAt >= healedAt && p.status === 201)
          if (ok) recoveredAt = ok.endedAt
          return ok !== undefined
        },
        { timeoutMs: 60_000, everyMs: 20 },
      )
    } finally {
      stop = true
      await Promise.all(loops)
    }
    await until(`${name}: gRPC health SERVING again`, async () => (await health(hc)) === 'SERVING', { timeoutMs: 30_000 })

    const during = probes.filter((p) => p.startedAt >= faultAt && p.startedAt < healedStart)
    const writes = probes.filter((p) => p.what === 'write')
    const reads = probes.filter((p) => p.what.startsWith('read '))
    const maxLatency = Math.max(...probes.map((p) => p.endedAt - p.startedAt))
    const recoveryMs = recoveredAt - healedAt
    const seenDuring = [...new Set(healthSeen.filter((h) => h.at >= faultAt && h.at < healedStart).map((h) => h.status))].join('/')
    // A blackhole shorter than the client's bound (timeout + 1 s) may be ridden out: answers arrive when it ends.
    const observable = !(kind === 'blackholed' && seconds * 1000 <= STORE_TIMEOUT_MS + 1000)

    if (probes.some((p) => p.status >= 500 && p.status !== 503)) t.comment(`${name}: the service's log:\n${cli.stderr.slice(-15).join('\n')}`)
    t.same(
      probes.filter((p) => p.status >= 500 && p.status !== 503).map((p) => `${p.what} ${p.status} ${JSON.stringify(p.body).slice(0, 200)}`),
      [],
      `${name}: no 5xx other than 503`,
    )
    t.same(
      probes.filter((p) => p.status === 0).map((p) => `${p.what}: ${p.code} after ${Math.round(p.endedAt - p.startedAt)} ms`),
      [],
      `${name}: every request got an answer`,
    )
    t.same(
      probes.filter((p) => p.status === 503 && !(p.code === 'UNAVAILABLE' && Number(p.retryAfter) > 0)).map((p) => `${p.what} ${JSON.stringify(p.body)}`),
      [],
      `${name}: every 503 is UNAVAILABLE with Retry-After`,
    )
    t.ok(maxLatency <= LATENCY_BOUND_MS, `${name}: the slowest of ${probes.length} requests took ${Math.round(maxLatency)} ms (bound ${LATENCY_BOUND_MS} ms)`)
    t.same(
      writes.filter((p) => p.status !== 201 && p.status !== 503).map((p) => `${p.status} ${JSON.stringify(p.body).slice(0, 200)}`),
      [],
      `${name}: writes answer 201 or 503`,
    )
    t.same(
      reads.filter((p) => p.status !== 200).map((p) => `${p.what} ${p.status} ${JSON.stringify(p.body).slice(0, 200)}`),
      [],
      `${name}: reads of the device and the masks answer 200 throughout (${reads.length})`,
    )
    const unavailable = during.filter((p) => p.what === 'write' && p.status === 503).length
    const staleReads = during.filter((p) => p.what.startsWith('read ') && p.stale).length
    const readyzDown = during.filter((p) => p.what === 'readyz' && p.status === 503).length
    if (observable) {
      t.ok(unavailable > 0, `${name}: writes during the fault answered 503 UNAVAILABLE (${unavailable})`)
      t.ok(staleReads > 0, `${name}: reads during the fault are marked Apmatrix-Stale (${staleReads})`)
      t.ok(readyzDown > 0, `${name}: /readyz answered 503 during the fault (${readyzDown})`)
    } else {
      t.comment(`${name}: shorter than the client's bound; 503 writes ${unavailable}, stale reads ${staleReads}, /readyz 503 ${readyzDown}`)
    }
    if (observable) t.match(seenDuring, /NOT_SERVING/, `${name}: gRPC health NOT_SERVING during the fault (saw ${seenDuring})`)
    else t.comment(`${name}: gRPC health during the fault: ${seenDuring}`)
    const slowest = probes.reduce((a, b) => (b.endedAt - b.startedAt > a.endedAt - a.startedAt ? b : a))
    t.comment(
      `${name}: slowest: ${slowest.what} started ${Math.round(slowest.startedAt - faultAt)} ms after the fault began, answered ${slowest.status} after ${Math.round(slowest.endedAt - slowest.startedAt)} ms`,
    )
    t.ok(recoveryMs <= RECOVERY_BOUND_MS, `${name}: writes accepted again ${Math.round(recoveryMs)} ms after the fault ended, without a restart`)
    t.equal(cli.dead, false, `${name}: the service is still running`)
    cells.push({
      cell: name,
      faults,
      requests: probes.length + healthSeen.length,
      writes: writes.length,
      acked: writes.filter((p) => p.status === 201).length,
      unavailable,
      staleReads,
      maxLatencyMs: Math.round(maxLatency),
      recoveryMs: Math.round(recoveryMs),
      healthSeen: seenDuring,
      slowest: `${slowest.what} ${slowest.status}`,
    })
  }

  for (const seconds of durations) await t.test(`${kind} for ${seconds} s`, (t) => cell(t, kind, seconds))

  // Straight from the database: what was acknowledged is there, whole; nothing is there half.
  const db = new pg.Client({ connectionString: pgc.url })
  await db.connect()
  t.teardown(() => db.end())
  const rows = new Map<string, Record<string, string>>()
  for (const r of (await db.query(`SELECT uuid FROM "Mdev" WHERE host = 'local'`)).rows) rows.set(r.uuid, {})
  for (const r of (await db.query(`SELECT uuid, key, value FROM "MdevLabel" WHERE host = 'local'`)).rows) {
    const l = rows.get(r.uuid)
    if (l) l[r.key] = r.value
  }
  const defined = new Set((await db.query(`SELECT name FROM "Event" WHERE host = 'local' AND type = 'MdevDefined'`)).rows.map((r) => r.name as string))
  const acked = sent.filter((s) => s.probe.status === 201)
  const lost = acked.filter((s) => !rows.has(s.id))
  t.same(
    lost.map((s) => s.id),
    [],
    `every acknowledged write is in the database (${acked.length} acknowledged)`,
  )
  t.same(
    acked.filter((s) => rows.has(s.id) && !sameLabels(rows.get(s.id), s.labels)).map((s) => [s.id, rows.get(s.id), s.labels]),
    [],
    'every acknowledged device has exactly the labels it was written with',
  )
  t.same(
    [...rows.keys()].filter((id) => !defined.has(id)),
    [],
    `nothing half-stored: every stored device (${rows.size}) has its MdevDefined event`,
  )
  const sentById = new Map(sent.map((s) => [s.id, s]))
  const strays = [...rows.keys()].filter((id) => id !== known && !sentById.has(id))
  t.same(strays, [], 'no device the test did not write')
  const unacked = [...rows.keys()].filter((id) => sentById.get(id) && sentById.get(id)!.probe.status !== 201)
  t.same(
    unacked.filter((id) => !sameLabels(rows.get(id), sentById.get(id)!.labels)),
    [],
    `writes stored although answered 503 (commit outcome unknown to the service: ${unacked.length}) are whole too`,
  )
  t.same(all.filter((p) => p.status >= 500 && p.status !== 503).length, 0, `0 5xx other than 503 in ${all.length} requests`)

  for (const f of cells) figures.push({ ...f, lost: lost.filter((s) => s.labels.cell === f.cell.replace(' s', '').replace(' ', '-')).length })
}

requireOrSkip(
  t,
  'outage matrix: refused, dropped and blackholed PostgreSQL for 1, 5 and 30 s',
  privatePostgresMissing(),
  async (t) => {
    const t0 = Date.now()
    // APMATRIX_OUTAGE_CELLS=blackholed-5,refused-1 runs only those cells (while working on one).
    const only = process.env.APMATRIX_OUTAGE_CELLS?.split(',').filter(Boolean)
    const figures: CellFigures[] = []
    t.jobs = KINDS.length
    const stacks = KINDS.map((kind) => ({ kind, durations: DURATIONS.filter((s) => !only || only.includes(`${kind}-${s}`)) }))
      .filter((k) => k.durations.length > 0)
      .map((k) => t.test(`${k.kind}: its own cluster and service`, { buffered: true }, (t) => stack(t, k.kind, k.durations, figures)))
    await Promise.all(stacks)
    const order = (f: CellFigures) => DURATIONS.indexOf(Number(f.cell.split(' ')[1])) * KINDS.length + KINDS.indexOf(f.cell.split(' ')[0] as Kind)
    t.comment(
      `outage matrix (store timeout ${STORE_TIMEOUT_MS} ms, the three kinds side by side, ${Math.round((Date.now() - t0) / 1000)} s):\n${table(
        [
          'cell',
          'requests',
          'writes',
          '201',
          '503 during',
          'stale reads',
          'max latency ms',
          'slowest',
          'recovery ms',
          'health during',
          'lost',
          'faults injected',
        ],
        figures
          .sort((a, b) => order(a) - order(b))
          .map((f) => [
            f.cell,
            f.requests,
            f.writes,
            f.acked,
            f.unavailable,
            f.staleReads,
            f.maxLatencyMs,
            f.slowest,
            f.recoveryMs,
            f.healthSeen,
            f.lost ?? 0,
            f.faults,
          ]),
      )}`,
    )
  },
  'postgres',
)
