/**
 * The rows of `apmatrix inventory`: AP cards and queues in the habit of `lszcrypt` (and `lszcrypt -V`), from
 * the API's adapter and queue views (docs/api.md (Resources) Inventory).
 */
import type { Adapter, Queue } from '../client/api-types.js'

/** Columns of the default view. */
export const INVENTORY_COLUMNS = ['CARD.DOMAIN', 'TYPE', 'MODE', 'STATUS', 'REQUESTS', 'DRIVER', 'OWNER'] as const
/** Columns of `-V`: lszcrypt -V's PENDING, HWTYPE, QDEPTH and FUNCTIONS after REQUESTS, then DRIVER and OWNER. */
export const INVENTORY_VERBOSE_COLUMNS = [
  'CARD.DOMAIN',
  'TYPE',
  'MODE',
  'STATUS',
  'REQUESTS',
  'PENDING',
  'HWTYPE',
  'QDEPTH',
  'FUNCTIONS',
  'DRIVER',
  'OWNER',
] as const

const MODES: Record<string, string> = { cca: 'CCA-Coproc', ep11: 'EP11-Coproc', accel: 'Accelerator' }

/**
 * The FUNCTIONS letters, in lszcrypt's order (function word bits 0..7, O-7): S APSC, M RSA ME 4K, C RSA CRT 4K,
 * D CCA, A accelerator, X EP11, N APXA, H stateless filtering. lszcrypt's F and R (full or restricted
 * function set, bits 8 and 9) are not decoded by the API and not shown.
 */
const FUNCTION_LETTERS: ReadonlyArray<readonly [string, string]> = [
  ['APSC', 'S'],
  ['MEX4K', 'M'],
  ['CRT4K', 'C'],
  ['COPRO', 'D'],
  ['ACCEL', 'A'],
  ['EP11', 'X'],
  ['APXA', 'N'],
  ['SLCF', 'H'],
]

/** `SMC-A-N-`: one letter per function the card has, `-` where it lacks it (lszcrypt -V FUNCTIONS). */
export function functionsCell(functions: readonly string[]): string {
  return FUNCTION_LETTERS.map(([name, letter]) => (functions.includes(name) ? letter : '-')).join('')
}

/** The status word of a card as lszcrypt prints it: deconfig, chkstop, online, offline; `-` when no driver says. */
export function cardStatus(a: Pick<Adapter, 'config' | 'chkstop' | 'online'>): string {
  if (!a.config) return 'deconfig'
  if (a.chkstop) return 'chkstop'
  return a.online === null ? '-' : a.online ? 'online' : 'offline'
}

/**
 * The status word of a queue as lszcrypt prints it: deconfig, chkstop, online or offline (zcrypt's `online`);
 * for a queue bound to vfio_ap its `status` (unassigned, assigned, in use, V-31); `-` for an unbound queue.
 */
export function queueStatus(q: Pick<Queue, 'config' | 'chkstop' | 'online' | 'vfioStatus'>): string {
  if (!q.config) return 'deconfig'
  if (q.chkstop) return 'chkstop'
  if (q.online !== null) return q.online ? 'online' : 'offline'
  return q.vfioStatus ?? '-'
}

/** The driver as lszcrypt -V prints it: the driver name, `-no-driver-` when none is bound. */
function driverCell(driver: string): string {
  return driver === 'none' ? '-no-driver-' : driver
}

/**
 * Rows of the inventory table, cards in apid order, each followed by its queues in apqi order when
 * `withQueues`. A card's REQUESTS and PENDING are the sums over its queues (`request_count`;
 * `requestq_count` + `pendingq_count`, as lszcrypt adds them); PENDING is `-` for a deconfigured card or an
 * unbound queue. `verbose` adds PENDING, HWTYPE, QDEPTH (two digits, as lszcrypt) and FUNCTIONS
 * ({@link INVENTORY_VERBOSE_COLUMNS}); a queue shows the HWTYPE, QDEPTH and FUNCTIONS of its card.
 */
export function inventoryRows(adapters: readonly Adapter[], queues: readonly Queue[], opts: { withQueues: boolean; verbose: boolean }): string[][] {
  const byCard = new Map<number, Queue[]>()
  for (const q of queues) byCard.set(q.apid, [...(byCard.get(q.apid) ?? []), q])
  const rows: string[][] = []
  for (const a of [...adapters].sort((x, y) => x.apid - y.apid)) {
    const own = (byCard.get(a.apid) ?? []).sort((x, y) => x.apqi - y.apqi)
    const requests = own.reduce((n, q) => n + (q.requestCount ?? 0), 0)
    const mode = MODES[a.mode] ?? a.mode
    const cardInfo = [String(a.hwtype), a.depth === null ? '-' : String(a.depth).padStart(2, '0'), functionsCell(a.functions)]
    const pending = a.config ? String(own.reduce((n, q) => n + q.requestqCount + q.pendingqCount, 0)) : '-'
    rows.push([
      a.apid.toString(16).padStart(2, '0'),
      a.type,
      mode,
      cardStatus(a),
      String(requests),
      ...(opts.verbose ? [pending, ...cardInfo] : []),
      driverCell(a.driver),
      '-',
    ])
    if (!opts.withQueues) continue
    for (const q of own) {
      const qPending = !q.config || q.driver === 'none' ? '-' : String(q.requestqCount + q.pendingqCount)
      rows.push([
        q.apqn,
        a.type,
        mode,
        queueStatus(q),
        q.requestCount === null ? '-' : String(q.requestCount),
        ...(opts.verbose ? [qPending, ...cardInfo] : []),
        driverCell(q.driver),
        q.owner ?? '-',
      ])
    }
  }
  return rows
}
