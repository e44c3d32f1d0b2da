/**
 * Executes a plan (src/domain/plan.ts) against a bus, one step at a time, in order. Every step is
 * idempotent, so re-running a plan after a crash is safe. The safe hand-over (docs/api.md (Reconcile) step 4) lives
 * here: queues leaving the host's default drivers are drained (bounded wait) before the mask changes, and
 * any request still on them when the mask moves them is counted as lost.
 */
import type { Plan, PlanOp } from '../domain/plan.js'
import { createYielder } from '../async/yielder.js'
import { BusError, type BusPort } from '../bus/port.js'

export interface ExecutorOptions {
  /** How long this execution may wait for queues to drain (the drain's budget in this pass). */
  drainTimeoutMs: number
  /**
   * What happens when the budget is spent with queues still busy (domain/drain-policy.ts): `flush` (default)
   * changes the mask anyway and counts the flushed requests as lost; `wait` ends the execution at the drain
   * step (`ExecutionResult.waiting`), no later step runs and nothing is lost.
   */
  onDrainTimeout?: 'flush' | 'wait'
  /** Poll interval while draining. */
  drainPollMs: number
  /** Hard hand-over: skip the drain and change the mask at once (requests on the queues are lost). */
  hard?: boolean
  /** Sleep function (tests inject one that advances the emulator's virtual clock). */
  sleep?: (ms: number) => Promise<void>
  /**
   * Told while a drain waits: at its first poll, then whenever the counts changed and at least
   * `drainProgressMs` of drain time passed since the last report. Errors propagate (they end the execution).
   */
  onDrainProgress?: (p: DrainProgress) => Promise<void>
  /** Least drain time between two progress reports (default 500 ms). */
  drainProgressMs?: number
  /**
   * True once the caller is shutting down: the execution ends with {@link ExecutionAborted} before its next
   * step and at the next poll of a drain, as if the process had died there (the journal shows where; the next
   * pass, here or on another replica, goes on from the bus as it is). A drain may wait an hour and a slow write
   * a minute: a graceful stop must not wait for them.
   */
  stopping?: () => boolean
}

/** A drain in progress: requests still queued or pending per busy queue, and the queues already idle and offline. */
export interface DrainProgress {
  remaining: Record<string, number>
  offline: string[]
  waitedMs: number
}

/** The outcome of one step, as journaled. */
export interface StepResult {
  index: number
  op: PlanOp
  state: 'done' | 'failed'
  errno?: string
  message?: string
  /** For drain steps: how long it waited and what was still queued when it gave up. */
  drain?: { waitedMs: number; remaining: Record<string, number>; timedOut: boolean; offline: string[]; waiting?: boolean }
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
  /** A drain step whose budget ran out under the `wait` policy: later steps were not run (the hand-over waits). */
  waiting?: StepResult
}

const defaultSleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

/** The parts of a plan (docs/api.md (Reconcile) steps 1-7) whose steps are journaled together. */
export type PhaseName = 'release' | 'return' | 'drain' | 'take' | 'bind' | 'build'

const PHASE_OF: Record<PlanOp['kind'], PhaseName> = {
  shrinkMdev: 'release',
  removeMdev: 'release',
  returnToHost: 'return',
  // A drain may wait up to its timeout: the mask write after it gets a fence check of its own.
  drainQueues: 'drain',
  takeFromHost: 'take',
  bindQueue: 'bind',
  createMdev: 'build',
  configureMdev: 'build',
}

/** A run of consecutive plan steps of one phase (every `createMdev` and `configureMdev` of a plan, ...). */
export interface Phase {
  name: PhaseName
  /** Its steps' plan indexes, in order. */
  indexes: number[]
}

/** Splits a plan into {@link Phase}s: maximal runs of consecutive steps of the same phase, in plan order. */
export function phasesOf(plan: Plan): Phase[] {
  const out: Phase[] = []
  for (const [index, op] of plan.operations.entries()) {
    const name = PHASE_OF[op.kind]
    const last = out.at(-1)
    if (last && last.name === name) last.indexes.push(index)
    else out.push({ name, indexes: [index] })
  }
  return out
}

/**
 * What the executor reports as it goes. A hook that throws ends the execution with that error (no step
 * after it runs): the reconciler's fence check uses it to stop a pass whose lease was lost.
 */
export interface ExecutionHooks {
  /** Before the first step of a phase (the fence check). */
  beforePhase?(phase: Phase): Promise<void>
  /**
   * After a phase: every step it ran (`done`, or the one that `failed` last, which ends the execution). The
   * reconciler journals them in one transaction; until then a crash leaves the phase's steps `planned`.
   */
  afterPhase?(phase: Phase, steps: StepResult[]): Promise<void>
  /** Around each bus step (crash-safety test points). */
  beforeStep?(step: StepResult): Promise<void> | void
  afterStep?(step: StepResult): Promise<void> | void
}

/**
 * Runs `plan` step by step, phase by phase (see {@link phasesOf}), letting the event loop turn between steps
 * once a turn's budget is spent (a 512-step plan on an in-process host would otherwise hold it for seconds).
 * Stops at the first failed step (the reconciler requeues). Errors of the hooks and {@link ExecutionAborted}
 * propagate; any other error of a step makes it a failed step.
 */
export async function executePlan(bus: BusPort, plan: Plan, opts: ExecutorOptions, hooks: ExecutionHooks = {}): Promise<ExecutionResult> {
  const sleep = opts.sleep ?? defaultSleep
  const turn = createYielder()
  const steps: StepResult[] = []
  let lost = 0
  for (const phase of phasesOf(plan)) {
    await hooks.beforePhase?.(phase)
    const ran: StepResult[] = []
    for (const index of phase.indexes) {
      await turn()
      if (opts.stopping?.()) throw new ExecutionAborted('the reconciler is stopping')
      const op = plan.operations[index]!
      const step: StepResult = { index, op, state: 'done' }
      await hooks.beforeStep?.(step)
      try {
        await runStep(bus, step, opts, sleep)
      } catch (e) {
        if (e instanceof ExecutionAborted) throw e
        step.state = 'failed'
        step.errno = e instanceof BusError ? e.errno : undefined
        step.message = e instanceof Error ? e.message : String(e)
      }
      lost += step.lostRequests ?? 0
      steps.push(step)
      ran.push(step)
      await hooks.afterStep?.(step)
      if (step.state === 'failed' || step.drain?.waiting) break
    }
    await hooks.afterPhase?.(phase, ran)
    const failed = ran.find((r) => r.state === 'failed')
    if (failed) return { steps, lostRequests: lost, failed }
    const waiting = ran.find((r) => r.drain?.waiting)
    if (waiting) return { steps, lostRequests: lost, waiting }
  }
  return { steps, lostRequests: lost }
}

/** One step against the bus; throws what the bus threw. */
async function runStep(bus: BusPort, step: StepResult, opts: ExecutorOptions, sleep: (ms: number) => Promise<void>): Promise<void> {
  const op = step.op
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
  const turn = createYielder()
  const everyMs = opts.drainProgressMs ?? 500
  let reported: { at: number; key: string } | undefined
  for (;;) {
    const load = await bus.queueLoad(apqns.filter((q) => !offline.has(q)))
    for (const [apqn, n] of load) {
      if (n > 0) continue
      // 65,536 queues on a large host: let other work run now and then, never between the read and the write below.
      await turn()
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
    const result = () => ({ waitedMs: waited, remaining, offline: [...offline] })
    if (Object.keys(remaining).length === 0) return { ...result(), timedOut: false }
    if (waited >= opts.drainTimeoutMs) return { ...result(), timedOut: true, ...(opts.onDrainTimeout === 'wait' ? { waiting: true } : {}) }
    if (opts.onDrainProgress) {
      const key = JSON.stringify(remaining)
      if (!reported || (key !== reported.key && waited - reported.at >= everyMs)) {
        reported = { at: waited, key }
        await opts.onDrainProgress(result())
      }
    }
    if (opts.stopping?.()) throw new ExecutionAborted('the reconciler is stopping')
    await sleep(opts.drainPollMs)
    waited += opts.drainPollMs
  }
}

/**
 * Thrown by a bus call (or a hook) to end an execution at once: it is not a failed step, and it reaches the
 * caller of {@link executePlan} unchanged (a pass whose lease was lost stops without journaling the phase).
 */
export class ExecutionAborted extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'ExecutionAborted'
  }
}
