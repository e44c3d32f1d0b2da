/**
 * Executes a plan (src/domain/plan.ts) against a bus, one step at a time, in order. Every step is
 * idempotent, so re-running a plan after a crash is safe. The safe hand-over (docs/api.md (Reconcile) step 4) lives
 * here: queues leaving the host's default drivers are drained (bounded wait) before the mask changes, and
 * any request still on them when the mask moves them is counted as lost.
 */
import type { Plan, PlanOp } from '../domain/plan.js'
import { BusError, type BusPort } from '../bus/port.js'

export interface ExecutorOptions {
  /** How long to wait for queues to drain before forcing the mask change anyway. */
  drainTimeoutMs: number
  /** Poll interval while draining. */
  drainPollMs: number
  /** Hard hand-over: skip the drain and change the mask at once (requests on the queues are lost). */
  hard?: boolean
  /** Sleep function (tests inject one that advances the emulator's virtual clock). */
  sleep?: (ms: number) => Promise<void>
}

/** The outcome of one step, as journaled. */
export interface StepResult {
  index: number
  op: PlanOp
  state: 'done' | 'failed'
  errno?: string
  message?: string
  /** For drain steps: how long it waited and what was still queued when it gave up. */
  drain?: { waitedMs: number; remaining: Record<string, number>; timedOut: boolean; offline: string[] }
  /** For mask steps that take queues from the host: requests that were still on them (flushed, B-16). */
  lostRequests?: number
  /** The same, per queue (only queues that lost something). */
  lostByApqn?: Record<string, number>
}

export interface ExecutionResult {
  steps: StepResult[]
  /** Requests flushed by a mask change that moved a busy queue (0 with a successful drain). */
  lostRequests: number
  /** The first failed step, if any; later steps were not run. */
  failed?: StepResult
}

const defaultSleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

/**
 * Runs `plan` step by step; `journal` is awaited before (`planned`) and after (`done`/`failed`) every step so
 * a crash leaves a record of how far it got. Stops at the first failed step (the reconciler requeues).
 */
export async function executePlan(
  bus: BusPort,
  plan: Plan,
  opts: ExecutorOptions,
  journal: (phase: 'planned' | 'done' | 'failed', step: StepResult) => Promise<void> = async () => {},
): Promise<ExecutionResult> {
  const sleep = opts.sleep ?? defaultSleep
  const steps: StepResult[] = []
  let lost = 0
  for (const [index, op] of plan.operations.entries()) {
    const step: StepResult = { index, op, state: 'done' }
    await journal('planned', step)
    try {
      switch (op.kind) {
        case 'shrinkMdev':
        case 'configureMdev':
          await bus.configureMdev(op.uuid, op.to, op.from)
          break
        case 'removeMdev':
          await bus.removeMdev(op.uuid)
          break
        case 'returnToHost':
          await bus.setMasks({ apmask: op.apmask, aqmask: op.aqmask })
          break
        case 'drainQueues':
          if (!opts.hard) step.drain = await drain(bus, op.apqns, opts, sleep)
          break
        case 'takeFromHost': {
          const load = await bus.queueLoad(op.apqns)
          step.lostByApqn = Object.fromEntries([...load].filter(([, n]) => n > 0))
          step.lostRequests = [...load.values()].reduce((a, b) => a + b, 0)
          lost += step.lostRequests
          await bus.setMasks({ apmask: op.apmask, aqmask: op.aqmask })
          break
        }
        case 'bindQueue':
          await bus.bindQueue(op.apqn, op.driver)
          break
        case 'createMdev':
          await bus.createMdev(op.uuid)
          break
      }
    } catch (e) {
      step.state = 'failed'
      step.errno = e instanceof BusError ? e.errno : undefined
      step.message = e instanceof Error ? e.message : String(e)
    }
    steps.push(step)
    await journal(step.state, step)
    if (step.state === 'failed') return { steps, lostRequests: lost, failed: step }
  }
  return { steps, lostRequests: lost }
}

/**
 * The safe hand-over's first half (docs/api.md (Reconcile) step 4): each queue is taken offline for new work as soon
 * as it is idle, then the rest are waited for, up to the timeout. zcrypt's `online=0` flushes (B-42), so it is
 * written only to a queue with nothing queued or pending: nothing is lost, and from then on the zcrypt
 * dispatcher gives the queue no new work (new requests are refused, not lost). Queues still busy at the
 * timeout are left to the mask change, whose flush the caller counts as lost.
 */
async function drain(bus: BusPort, apqns: string[], opts: ExecutorOptions, sleep: (ms: number) => Promise<void>) {
  let waited = 0
  const offline = new Set<string>()
  for (;;) {
    const load = await bus.queueLoad(apqns.filter((q) => !offline.has(q)))
    for (const [apqn, n] of load) {
      if (n > 0) continue
      // Read again right before the write: the batch read above may have yielded to other work (and to the
      // clock) since this queue was seen idle; between these two calls nothing else runs in-process.
      const now = (await bus.queueLoad([apqn])).get(apqn) ?? 0
      if (now > 0) {
        load.set(apqn, now)
        continue
      }
      await bus.setQueueOnline(apqn, false).catch((e) => {
        if (!(e instanceof BusError)) throw e // not bound to zcrypt any more: nothing to take offline
      })
      offline.add(apqn)
    }
    const remaining = Object.fromEntries([...load].filter(([q]) => !offline.has(q)))
    if (Object.keys(remaining).length === 0) return { waitedMs: waited, remaining, timedOut: false, offline: [...offline] }
    if (waited >= opts.drainTimeoutMs) return { waitedMs: waited, remaining, timedOut: true, offline: [...offline] }
    await sleep(opts.drainPollMs)
    waited += opts.drainPollMs
  }
}
