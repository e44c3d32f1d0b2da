/**
 * The replicas test's cluster: several `apmatrix serve` processes (the build in dist/) sharing one
 * PostgreSQL store and the same remote emulated hosts (APMATRIX_HOSTS=name@addr,...), and what the test
 * reads of them: lease holders through REST, and the bus of each host straight from its emulator.
 */
import type { RemoteEmulator } from '../../src/emulator-remote/client.js'
import { crossProduct, isReady, restClient, type RestCall } from '../scenario/rest-client.js'
import { readyLine, spawnCli, type CliProcess } from './cli-process.js'

interface Teardown {
  teardown(fn: () => unknown): void
}

/** Lease time and resync of every replica: short, so a dead replica's hosts move within seconds. */
export const LEASE_TTL_MS = 1500
export const RESYNC_MS = 300

const SERVICE_READY = /^apmatrix serving REST on (http:\/\/\S+)$/

/** A running replica. */
export interface Replica {
  id: string
  p: CliProcess
  url: string
  call: RestCall
}

/**
 * `apmatrix serve` as replica `id` (APMATRIX_REPLICA_ID) managing `hosts` (name -> emulator address),
 * REST and gRPC on free ports; `crashAt` sets the crash hook (APMATRIX_CRASH_AT), `env` overrides any setting. Throws when it dies
 * before its ready line.
 */
export async function startReplica(
  t: Teardown,
  o: { id: string; databaseUrl: string; hosts: Map<string, string>; crashAt?: string; env?: Record<string, string>; readyTimeoutMs?: number },
): Promise<Replica> {
  const p = spawnCli(t, ['serve'], {
    DATABASE_URL: o.databaseUrl,
    APMATRIX_HTTP_ADDR: '127.0.0.1:0',
    APMATRIX_GRPC_ADDR: '127.0.0.1:0',
    APMATRIX_HOSTS: [...o.hosts].map(([name, addr]) => `${name}@${addr}`).join(','),
    APMATRIX_EMULATOR_ADDR: '',
    APMATRIX_REPLICA_ID: o.id,
    APMATRIX_LOG_LEVEL: 'warn',
    APMATRIX_RESYNC_MS: String(RESYNC_MS),
    APMATRIX_LEASE_TTL_MS: String(LEASE_TTL_MS),
    APMATRIX_DRAIN_TIMEOUT_MS: '2000',
    APMATRIX_CRASH_AT: o.crashAt ?? '',
    ...o.env,
  })
  const m = await readyLine(p, SERVICE_READY, `replica ${o.id}'s ready line`, o.readyTimeoutMs)
  if (!m) throw new Error(`replica ${o.id} exited before it was ready: ${p.stderr.slice(-20).join('\n')}`)
  return { id: o.id, p, url: m[1]!, call: restClient(m[1]!) }
}

/** The live lease holder of `host` as replica `via` reports it (`GET /v1/hosts/{host}` leaseHolder). */
export async function leaseHolder(via: Replica, host: string): Promise<string | null> {
  const r = await via.call('GET', `/v1/hosts/${host}`)
  if (r.status !== 200) throw new Error(`GET /v1/hosts/${host} through ${via.id}: ${r.status} ${r.text.slice(0, 300)}`)
  return r.body.leaseHolder as string | null
}

/** One matrix device of a desired document. */
export interface DesiredMdev {
  uuid: string
  spec: { adapters: number[]; domains: number[]; controlDomains: number[]; state: 'started' | 'stopped' }
}

/** A whole-host desired document (`PUT /v1/hosts/{host}/desired`). */
export interface Desired {
  masks: { apmask: string }
  mdevs: DesiredMdev[]
}

/**
 * A desired state for host number `n` of the spec-fixture profile (adapters 5-7, domains 04 47 ab ff):
 * adapters 5-7 leave the host drivers and three devices split them, so a reconcile is a plan of many
 * bus writes (drain, mask, creates, matrix writes) that a kill can cut in the middle.
 */
export function desiredFor(n: number): Desired {
  const uuid = (i: number) => `d${n.toString(16)}000000-0000-4000-8000-00000000000${i}`
  return {
    masks: { apmask: '-5,-6,-7' },
    mdevs: [
      { uuid: uuid(1), spec: { adapters: [5], domains: [0x04, 0x47], controlDomains: [0x04], state: 'started' } },
      { uuid: uuid(2), spec: { adapters: [6], domains: [0xab, 0xff], controlDomains: [0xab, 0xff], state: 'started' } },
      { uuid: uuid(3), spec: { adapters: [7], domains: [0x04, 0x47, 0xab, 0xff], controlDomains: [], state: 'started' } },
    ],
  }
}

/**
 * The second desired state of host `n`: every device of {@link desiredFor} changes (one stops) and three
 * are added on the APQNs that freed up, so the plan is long (about ten steps) and a kill lands inside it.
 */
export function desiredRound2(n: number): Desired {
  const d = desiredFor(n)
  const uuid = (i: number) => `d${n.toString(16)}000000-0000-4000-8000-00000000000${i}`
  d.mdevs[0]!.spec = { adapters: [5], domains: [0x04], controlDomains: [0x04], state: 'started' }
  d.mdevs[1]!.spec.state = 'stopped'
  d.mdevs[2]!.spec.controlDomains = [0x47, 0xab]
  d.mdevs.push(
    { uuid: uuid(4), spec: { adapters: [5], domains: [0x47], controlDomains: [], state: 'started' } },
    { uuid: uuid(5), spec: { adapters: [5], domains: [0xab, 0xff], controlDomains: [0xff], state: 'started' } },
    { uuid: uuid(6), spec: { adapters: [6], domains: [0x04, 0x47], controlDomains: [], state: 'started' } },
  )
  return d
}

const MATRIX = '/sys/devices/vfio_ap/matrix'
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/
/** apmask with bits 5, 6 and 7 cleared (what `-5,-6,-7` makes of the full default mask). */
export const APMASK_5_7 = `0xf8${'f'.repeat(62)}`

/**
 * Differences between the bus of a host (read from its emulator, not through apmatrix) and `want`,
 * plus devices the service does not report Ready for their generation (through `via`). Empty when converged.
 */
export async function mismatches(via: Replica, host: string, emu: RemoteEmulator, want: Desired, apmask: string): Promise<string[]> {
  const out: string[] = []
  const bus = (await emu.read('/sys/bus/ap/apmask')).trim()
  if (bus !== apmask) out.push(`${host}: apmask ${bus} != ${apmask}`)
  const onBus = (await emu.list(MATRIX)).filter((e) => UUID_RE.test(e)).sort()
  const started = want.mdevs
    .filter((m) => m.spec.state === 'started')
    .map((m) => m.uuid)
    .sort()
  if (JSON.stringify(onBus) !== JSON.stringify(started)) out.push(`${host}: devices on the bus ${onBus.join(' ') || '(none)'} != ${started.join(' ')}`)
  for (const m of want.mdevs) {
    if (m.spec.state !== 'started' || !onBus.includes(m.uuid)) continue
    const matrix = (await emu.read(`${MATRIX}/${m.uuid}/matrix`)).split('\n').filter(Boolean)
    const wantMatrix = crossProduct(m.spec.adapters, m.spec.domains)
    if (JSON.stringify(matrix) !== JSON.stringify(wantMatrix)) out.push(`${host} ${m.uuid}: matrix ${matrix.join(' ')} != ${wantMatrix.join(' ')}`)
    const cds = (await emu.read(`${MATRIX}/${m.uuid}/control_domains`))
      .split('\n')
      .filter(Boolean)
      .map((x) => parseInt(x, 16))
    if (JSON.stringify(cds) !== JSON.stringify(m.spec.controlDomains))
      out.push(`${host} ${m.uuid}: control domains ${cds.join(',')} != ${m.spec.controlDomains.join(',')}`)
  }
  for (const m of want.mdevs) {
    const r = await via.call('GET', `/v1/hosts/${host}/mdevs/${m.uuid}`)
    if (r.status !== 200) out.push(`${host} ${m.uuid}: GET through ${via.id}: ${r.status}`)
    else if (!isReady(r.body)) out.push(`${host} ${m.uuid}: not Ready for generation ${r.body.metadata.generation}`)
  }
  return out
}
