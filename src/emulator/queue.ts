import { formatApqn, formatCard } from '../domain/ids.js'
import type { RequestStats } from './api.js'
import type { KernelContext } from './context.js'
import { RC_DECONFIGURED, RC_NORMAL } from './machine.js'

/** O-11 device states. */
export type DevState = 'UNINITIATED' | 'OPERATING' | 'SHUTDOWN' | 'ERROR'
/** O-11 state machine states. */
export type SmState = 'RESET_START' | 'RESET_WAIT' | 'IDLE' | 'WORKING' | 'QUEUE_FULL'
/** O-17 drivers on the AP bus. */
export type DriverName = 'cex4card' | 'cex4queue' | 'vfio_ap'
/** O-13 interrupt states. */
export type IrqState = 'disabled' | 'pending' | 'enabled'

/** A card device `cardXX` (O-5..O-9). */
export class ApCard {
  readonly name: string
  driver: 'cex4card' | null = null
  /** zcrypt software online flag (O-9). */
  online = false
  requestCount = 0
  readonly queues = new Map<number, ApQueue>()
  constructor(
    readonly apid: number,
    readonly rawType: number,
    /** O-6 compatibility type (10..14). */
    readonly hwtype: number,
    readonly functions: number,
    public depth: number,
    public config: boolean,
    public chkstop: boolean,
  ) {
    this.name = formatCard(apid)
  }

  get devpath(): string {
    return `/devices/ap/${this.name}`
  }
}

/** A queue device `XX.YYYY` (O-10..O-13) with its host workload (B-16, B-17). */
export class ApQueue {
  readonly name: string
  readonly qid: number
  devState: DevState = 'UNINITIATED'
  sm: SmState = 'RESET_START'
  lastErrRc = 0
  /** Virtual time at which the running reset completes; 0 when none runs. */
  resetUntil = 0
  irq: IrqState = 'disabled'
  driver: 'cex4queue' | 'vfio_ap' | null = null
  /** zcrypt queue online flag (B-42). */
  online = false
  /** B-33 (v6.19+): '' when unset. */
  driverOverride = ''
  requestCount = 0
  /** Requests on the request list (not yet sent). */
  waiting = 0
  /** Completion times of the sent requests (the pending list), ascending. */
  pending: number[] = []
  readonly stats: RequestStats = { submitted: 0, completed: 0, flushed: 0, rejected: 0 }
  /** V-39: response code of the last vfio_ap reset. */
  lastResetRc = 0
  /** V-40: guest notification byte address registered through AQIC (0 = none). */
  nib = 0

  constructor(
    readonly apid: number,
    readonly apqi: number,
    readonly card: ApCard,
    public config: boolean,
    public chkstop: boolean,
  ) {
    this.name = formatApqn(apid, apqi)
    this.qid = (apid << 8) | apqi
  }

  get devpath(): string {
    return `/devices/ap/${this.card.name}/${this.name}`
  }

  /** B-17: usable for new host requests. */
  usable(): boolean {
    return this.config && !this.chkstop && this.devState === 'OPERATING'
  }

  resetInProgress(): boolean {
    return this.sm === 'RESET_START' || this.sm === 'RESET_WAIT'
  }
}

/**
 * B-16: every message on the pending and request lists completes with EAGAIN; both counters go to 0;
 * request_count is unchanged.
 */
export function flushQueue(ctx: KernelContext, q: ApQueue): void {
  const n = q.waiting + q.pending.length
  if (n === 0) return
  q.stats.flushed += n
  if (ctx.traceRequests) for (let i = 0; i < n; i++) ctx.events.emit({ kind: 'request', apqn: q.name, result: 'EAGAIN' })
  q.waiting = 0
  q.pending = []
  if (q.devState === 'OPERATING' && !q.resetInProgress()) q.sm = 'IDLE'
}

/**
 * O-11: start the state machine with a reset (RAPQ): flush, RESET_START, interrupts off; the reset
 * completes `resetMs` virtual ms later (T-48 reads "Reset in progress." until then).
 */
export function startReset(ctx: KernelContext, q: ApQueue): void {
  flushQueue(ctx, q)
  q.irq = 'disabled'
  if (q.devState !== 'OPERATING') return
  q.sm = 'RESET_START'
  q.resetUntil = ctx.now() + ctx.machine.resetMs
  ctx.busy.add(q)
  if (ctx.machine.resetMs <= 0) processQueue(ctx, q, ctx.now())
}

/** B-4: initialise a configured queue: OPERATING plus a reset. */
export function initQueue(ctx: KernelContext, q: ApQueue): void {
  q.devState = 'OPERATING'
  q.lastErrRc = 0
  startReset(ctx, q)
}

/**
 * ZAPQ as vfio_ap and the bus's remove issue it (B-14, V-39): flush, interrupts off and the guest NIB
 * released. Returns the response code (00, or TAPQ's 01/03/04). 03 does not count as a failed reset
 * (V-39, since 6.6 [inferred]).
 */
export function zapq(ctx: KernelContext, q: ApQueue): number {
  const rc = ctx.machine.resetRc(q.apid, q.apqi)
  flushQueue(ctx, q)
  q.irq = 'disabled'
  q.nib = 0
  // The hardware reset takes resetMs whatever the device state, so `reset` shows it (T-33 probes this).
  if (rc === RC_NORMAL) {
    q.sm = 'RESET_START'
    q.resetUntil = ctx.now() + ctx.machine.resetMs
    ctx.busy.add(q)
  }
  return rc === RC_DECONFIGURED ? RC_NORMAL : rc
}

/** Sends waiting requests at time `t` while the card depth allows (request_count counts sends, O-12). */
function sendWaiting(ctx: KernelContext, q: ApQueue, t: number): void {
  if (!q.usable() || q.resetInProgress()) return
  const depth = Math.max(1, q.card.depth)
  const serviceMs = ctx.machine.adapters.get(q.apid)?.serviceMs ?? 5
  while (q.waiting > 0 && q.pending.length < depth) {
    q.waiting--
    q.pending.push(t + serviceMs)
    q.requestCount++
    q.card.requestCount++
  }
  updateSm(q)
}

function updateSm(q: ApQueue): void {
  if (q.devState !== 'OPERATING' || q.resetInProgress()) return
  q.sm = q.pending.length === 0 ? 'IDLE' : q.pending.length >= Math.max(1, q.card.depth) ? 'QUEUE_FULL' : 'WORKING'
}

/** Moves one busy queue forward to virtual time `t`: finishes its reset, completes and sends requests. */
export function processQueue(ctx: KernelContext, q: ApQueue, t: number): void {
  if (q.resetUntil > 0) {
    if (q.resetUntil > t) {
      if (q.sm === 'RESET_START') q.sm = 'RESET_WAIT'
      return
    }
    const done = q.resetUntil
    q.resetUntil = 0
    q.sm = 'IDLE'
    if (q.devState === 'OPERATING') {
      // ap_interrupts is 1: zcrypt queues register adapter interrupts after the reset; vfio_ap leaves it to the guest (V-40).
      if (q.driver === 'cex4queue') q.irq = 'enabled'
      sendWaiting(ctx, q, done)
    }
  }
  while (q.pending.length > 0 && q.pending[0]! <= t) {
    const c = q.pending.shift()!
    q.stats.completed++
    if (ctx.traceRequests) ctx.events.emit({ kind: 'request', apqn: q.name, result: 'ok' }, c)
    sendWaiting(ctx, q, c)
  }
  updateSm(q)
  if (q.resetUntil === 0 && q.pending.length === 0 && (q.waiting === 0 || !q.usable())) ctx.busy.delete(q)
}

/** B-17: `count` host requests arrive; accepted only on a usable, online zcrypt queue. Returns the number accepted. */
export function submitToQueue(ctx: KernelContext, q: ApQueue, count: number): number {
  if (!q.usable() || q.driver !== 'cex4queue' || !q.online || !q.card.online) {
    q.stats.rejected += count
    return 0
  }
  q.stats.submitted += count
  q.waiting += count
  sendWaiting(ctx, q, ctx.now())
  ctx.busy.add(q)
  return count
}

/** The earliest virtual time at which this queue has something to do, or Infinity. */
export function nextQueueEvent(q: ApQueue): number {
  if (q.resetUntil > 0) return q.resetUntil
  return q.pending.length > 0 ? q.pending[0]! : Infinity
}
