/**
 * Leases when the store goes away (issue 11 §2): two `apmatrix serve` replicas on a private PostgreSQL cluster
 * drive two remote emulated hosts (`apmatrix emulator serve`, which log every bus write with its fence). The
 * cluster is blackholed (every process SIGSTOPped) for several lease times, and during it the hosts drift (a
 * matrix device removed behind apmatrix's back, straight at the emulator). No replica can prove its lease then,
 * so none may drive a host: the emulators' write logs must show no fenced write later than one lease time after
 * the freeze, and the drift must still be there when the cluster thaws. Afterwards every host is held again, the
 * drift is repaired, and the logs show one holder per token and no interleaving of two holders' writes
 * (replicas-fence-check.ts), so no host was driven by two replicas.
 */
import t from 'tap'
import { connectEmulator, type RemoteEmulator } from '../../src/emulator-remote/client.js'
import { applyMigrations } from '../../src/store/apply-migrations.js'
import { requireOrSkip } from '../helpers/required.js'
import { privatePostgresMissing, startPrivatePostgres } from '../helpers/private-postgres.js'
import { until } from '../scenario/rest-client.js'
import { startEmulatorProcess } from './cli-process.js'
import { sleep, table } from './outage-kit.js'
import { APMASK_5_7, LEASE_TTL_MS, desiredFor, leaseHolder, mismatches, startReplica, type Desired, type Replica } from './replicas-cluster.js'
import { checkFencedLog, describeRuns } from './replicas-fence-check.js'

const MATRIX = '/sys/devices/vfio_ap/matrix'
const STORE_TIMEOUT_MS = 1000
/** The blackhole: several lease times, so every lease runs out while nobody can renew it. */
const BLACKHOLE_MS = 4 * LEASE_TTL_MS + 2 * STORE_TIMEOUT_MS

requireOrSkip(
  t,
  'two replicas, store blackholed for longer than the lease: nobody drives a host it cannot prove it holds; held and converged after',
  privatePostgresMissing(),
  async (t) => {
    const t0 = Date.now()
    const pgc = await startPrivatePostgres(t)
    const hosts = ['a', 'b']
    const [, ...started] = await Promise.all([applyMigrations(pgc.url), ...hosts.map(() => startEmulatorProcess(t))])
    const addrs = new Map(hosts.map((h, i) => [h, (started[i] as { addr: string }).addr]))
    const emus = new Map<string, RemoteEmulator>(hosts.map((h) => [h, connectEmulator(addrs.get(h)!)]))
    t.teardown(() => {
      for (const e of emus.values()) e.close()
    })
    const env = { APMATRIX_STORE_TIMEOUT_MS: String(STORE_TIMEOUT_MS) }
    const replicas: Replica[] = await Promise.all(['replica-1', 'replica-2'].map((id) => startReplica(t, { id, databaseUrl: pgc.url, hosts: addrs, env })))
    const [r1, r2] = replicas as [Replica, Replica]
    const ids = replicas.map((r) => r.id)
    const holders = () => Promise.all(hosts.map((h) => leaseHolder(r1, h)))
    await until('every host held by a replica', async () => (await holders()).every((h) => h !== null && ids.includes(h)), { timeoutMs: 30_000 })

    const want = new Map<string, Desired>(hosts.map((h, i) => [h, desiredFor(i + 1)]))
    for (const [i, h] of hosts.entries()) {
      const r = await replicas[i % 2]!.call('PUT', `/v1/hosts/${h}/desired`, { body: want.get(h) })
      t.equal(r.status, 200, `PUT desired of ${h}: ${r.status === 200 ? 'ok' : r.text.slice(0, 300)}`)
    }
    const pending = async (via: Replica) => {
      const out: string[] = []
      for (const [h, emu] of emus) out.push(...(await mismatches(via, h, emu, want.get(h)!, APMASK_5_7)))
      return out
    }
    let last: string[] = []
    await until('both hosts converged before the outage', async () => (last = await pending(r2)).length === 0, {
      timeoutMs: 30_000,
      everyMs: 100,
      describe: () => last,
    })
    const before = await holders()
    t.comment(`before the outage: ${hosts.map((h, i) => `${h} held by ${before[i]}`).join(', ')} (${Date.now() - t0} ms)`)

    // The blackhole. Drift comes one lease time in: the replicas see it (kernel events), and must not repair it.
    const logMark = new Map(replicas.map((r) => [r.id, r.p.stderr.length]))
    const freezeWall = Date.now()
    pgc.freeze()
    let thawWall = 0
    try {
      await sleep(LEASE_TTL_MS)
      for (const [i, h] of hosts.entries()) await emus.get(h)!.write(`${MATRIX}/${desiredFor(i + 1).mdevs[0]!.uuid}/remove`, '1\n')
      await sleep(BLACKHOLE_MS - (Date.now() - freezeWall))
      // Still inside the blackhole: the drift is there (nobody drove the hosts), though the replicas saw it.
      for (const [i, h] of hosts.entries()) {
        const onBus = await emus.get(h)!.list(MATRIX)
        t.notOk(onBus.includes(desiredFor(i + 1).mdevs[0]!.uuid), `${h}: the removed device was not re-created during the blackhole`)
      }
      for (const r of replicas) {
        const m = await r.call('GET', '/metrics')
        const held = hosts.map((h) => new RegExp(`^apmatrix_lease_held\\{host="${h}"\\} (\\d+)`, 'm').exec(m.text)?.[1] ?? 'absent')
        t.ok(
          held.every((v) => v !== '1'),
          `${r.id}: counts no lease as held ${BLACKHOLE_MS} ms into the blackhole (apmatrix_lease_held ${hosts.map((h, i) => `${h}=${held[i]}`).join(' ')})`,
        )
      }
      const tried = replicas.reduce((sum, r) => sum + r.p.stderr.slice(logMark.get(r.id)).filter((l) => /reconcile failed/.test(l)).length, 0)
      t.ok(tried > 0, `the replicas tried to reconcile during the blackhole and failed without a write (${tried} failed passes logged)`)
    } finally {
      thawWall = Date.now()
      pgc.thaw()
    }

    const logs = new Map(await Promise.all(hosts.map(async (h) => [h, (await emus.get(h)!.writeLog()).entries] as const)))
    const blackholeRows: Array<Array<string | number>> = []
    for (const h of hosts) {
      const during = logs.get(h)!.filter((e) => e.fence && e.wallTimeMs >= freezeWall && e.wallTimeMs < thawWall)
      const late = during.filter((e) => e.wallTimeMs > freezeWall + LEASE_TTL_MS)
      t.same(
        late.map((e) => `#${e.seq} +${e.wallTimeMs - freezeWall} ms ${e.fence!.holder}/${e.fence!.token} ${e.path} ${e.value.trim()}`),
        [],
        `${h}: no replica wrote to the bus later than one lease time (${LEASE_TTL_MS} ms) into the blackhole`,
      )
      blackholeRows.push([h, during.length, late.length])
    }

    // After: held again, the drift repaired, the fence logs clean.
    const thawedAt = Date.now()
    let heldAgainMs = Number.NaN
    await until(
      'every host held again',
      async () => {
        const hs = await holders().catch(() => [])
        const ok = hs.length === hosts.length && hs.every((h) => h !== null && ids.includes(h))
        if (ok) heldAgainMs = Date.now() - thawedAt
        return ok
      },
      { timeoutMs: 30_000, everyMs: 100 },
    )
    let convergedMs = Number.NaN
    await until(
      'the drift repaired on both hosts',
      async () => {
        last = await pending(r1).catch((e: Error) => [e.message])
        if (last.length === 0) convergedMs = Date.now() - thawedAt
        return last.length === 0
      },
      { timeoutMs: 30_000, everyMs: 100, describe: () => last },
    )
    t.ok(heldAgainMs <= 10_000, `every host held again ${heldAgainMs} ms after the thaw`)
    t.ok(convergedMs <= 20_000, `the drift repaired ${convergedMs} ms after the thaw`)
    const after = await holders()
    const figures: Array<Array<string | number>> = []
    for (const [i, h] of hosts.entries()) {
      const entries = (await emus.get(h)!.writeLog()).entries
      const r = checkFencedLog(h, entries)
      t.same(r.violations, [], `${h}: one holder per token, tokens never go backwards, no interleaving (${describeRuns(r.runs)})`)
      t.same(
        r.unfenced.map((e) => `${e.path} ${e.value.trim()}`),
        [`${MATRIX}/${desiredFor(i + 1).mdevs[0]!.uuid}/remove 1`],
        `${h}: the only unfenced write is the test's drift`,
      )
      t.ok(
        r.runs.every((x) => ids.includes(x.holder)),
        `${h}: only replicas drove the bus`,
      )
      const row = blackholeRows[i]!
      figures.push([h, `${before[i]} -> ${after[i]}`, r.runs.length, r.refused.length, row[1]!, row[2]!, r.violations.length])
    }
    for (const r of replicas) t.equal(r.p.dead, false, `${r.id} kept running`)
    t.comment(
      `lease under outage: blackhole ${BLACKHOLE_MS} ms, lease ${LEASE_TTL_MS} ms, store timeout ${STORE_TIMEOUT_MS} ms; hosts held again ${heldAgainMs} ms and drift repaired ${convergedMs} ms after the thaw (${Math.round((Date.now() - t0) / 1000)} s)\n${table(
        ['host', 'holder', 'leases that wrote', 'stale writes refused', 'writes in blackhole', 'after lease time', 'fence violations'],
        figures,
      )}`,
    )
  },
  'postgres',
)
