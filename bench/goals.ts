/**
 * The goal table (issue 8 §8, with the security figures of issue 9 §6 and the console's of issue 10 §5): the suites of `npm run bench` record the figures they measure here, and
 * bench/run.ts prints one summary table at the end of the run (figure | measured | baseline | ratio | goal |
 * met/MISSED). A goal whose suite did not run (or did not reach the measurement) is printed as not measured,
 * never as met. Figures only: the run never fails on a missed goal (style.md habit 6).
 */
import { fmtInt, fmtMs, printTable } from './http-load-helpers.js'

/**
 * How a goal compares: a ratio to a same-run baseline (higher is better), the time per operation added to a
 * same-run baseline's (`baseline / measured − 1` of two rates, lower is better), or a time bound (lower is better).
 */
type GoalKind = { kind: 'ratio'; atLeast: number } | { kind: 'added'; below: number } | { kind: 'ms'; below: number }

/** One row of the table. */
interface GoalDef {
  id: GoalId
  figure: string
  /** The suite that measures it (`npm run bench -- SUITE`). */
  suite: string
  goal: GoalKind
}

/** Stable ids of the goals, in the order of the table. */
export type GoalId =
  | 'rest-get'
  | 'rest-list'
  | 'grpc-get'
  | 'durable-create'
  | 'demo-post-ready-p99'
  | 'full-plan'
  | 'full-put-ready'
  | 'full-loop-stall'
  | 'full-healthz-p99'
  | 'small-host-p99'
  | 'rest-get-auth'
  | 'grpc-get-auth'
  | 'console-longest-frame'

const GOALS: readonly GoalDef[] = [
  { id: 'rest-get', figure: 'REST GET one matrix device vs bare fastify route, same JSON (req/s)', suite: 'service', goal: { kind: 'ratio', atLeast: 0.6 } },
  { id: 'rest-list', figure: 'REST LIST of 100 matrix devices vs bare route, same JSON (req/s)', suite: 'service', goal: { kind: 'ratio', atLeast: 0.5 } },
  { id: 'grpc-get', figure: 'gRPC GetMdev vs bare grpc-js handler (calls/s)', suite: 'grpc', goal: { kind: 'ratio', atLeast: 0.6 } },
  {
    id: 'durable-create',
    figure: 'durable create (201, fsynced) vs raw single-row durable SQLite commits/s, 16 clients',
    suite: 'writes',
    goal: { kind: 'ratio', atLeast: 0.3 },
  },
  { id: 'demo-post-ready-p99', figure: 'POST -> Ready on demo, p99', suite: 'service', goal: { kind: 'ms', below: 50 } },
  { id: 'full-plan', figure: 'full: plan (POST /plan of the bring-up document)', suite: 'service', goal: { kind: 'ms', below: 100 } },
  { id: 'full-put-ready', figure: 'full: PUT desired -> all Ready', suite: 'service', goal: { kind: 'ms', below: 3000 } },
  { id: 'full-loop-stall', figure: 'full bring-up: longest event-loop stall', suite: 'service', goal: { kind: 'ms', below: 50 } },
  { id: 'full-healthz-p99', figure: 'full bring-up: /healthz p99 meanwhile', suite: 'service', goal: { kind: 'ms', below: 50 } },
  {
    id: 'small-host-p99',
    figure: "small host's POST -> Ready p99 while full is brought up on another host",
    suite: 'writes',
    goal: { kind: 'ms', below: 100 },
  },
  {
    id: 'rest-get-auth',
    figure: 'REST GET one matrix device, https + JWT (ES256) vs the same service over https without auth (server CPU per read)',
    suite: 'security',
    goal: { kind: 'added', below: 0.2 },
  },
  {
    id: 'grpc-get-auth',
    figure: 'gRPC GetMdev, TLS + JWT (ES256) vs the same service over TLS without auth (server CPU per call)',
    suite: 'security',
    goal: { kind: 'added', below: 0.2 },
  },
  { id: 'console-longest-frame', figure: 'console on full: longest frame while 50 events/s arrive', suite: 'console', goal: { kind: 'ms', below: 100 } },
]

/** What a suite measured for one goal. */
export interface GoalFigure {
  /** The figure: a rate (ratio goals) or milliseconds (time goals). */
  measured: number
  /** Ratio goals: the baseline's rate, measured in the same run. */
  baseline?: number
  /** Unit of `measured`/`baseline` for ratio goals, e.g. `req/s`. */
  unit?: string
  /** A short note printed under the table (sample size, method, what was capped). */
  note?: string
}

const recorded = new Map<GoalId, GoalFigure>()

/** Records the figure of goal `id` (a later record of the same goal replaces an earlier one). */
export function recordGoal(id: GoalId, f: GoalFigure): void {
  recorded.set(id, f)
}

/** The goals recorded so far (for tests of a suite, or a caller that prints its own table). */
export function recordedGoals(): ReadonlyMap<GoalId, GoalFigure> {
  return recorded
}

const fmtNum = (n: number) => (n >= 100 ? fmtInt(n) : n.toFixed(2))
const goalText = (g: GoalKind) => (g.kind === 'ratio' ? `>= ${g.atLeast}x` : g.kind === 'added' ? `< +${Math.round(g.below * 100)}% time` : `< ${g.below} ms`)

/**
 * Prints the goal table: every goal of the issue, measured or not. `suitesRun` names the suites of this
 * run, to tell "not run" from "run but not measured" (a phase failed or was skipped).
 */
export function printGoalTable(suitesRun: readonly string[]): void {
  console.log('\n== goals (issue 8 §8, issue 9 §6, issue 10 §5): each ratio against a baseline measured in the same run ==')
  const rows = [['figure', 'measured', 'baseline (same run)', 'ratio', 'goal', 'met?']]
  const notes: string[] = []
  let met = 0
  let missed = 0
  for (const g of GOALS) {
    const f = recorded.get(g.id)
    if (!f || Number.isNaN(f.measured)) {
      // Not run, a phase skipped (APMATRIX_BENCH_*_PHASES), or a measurement that failed or timed out.
      rows.push([g.figure, suitesRun.includes(g.suite) ? 'NOT MEASURED' : `not run (suite ${g.suite})`, '', '', goalText(g.goal), '-'])
      if (f?.note) notes.push(`${g.id}: ${f.note}`)
      continue
    }
    let ok: boolean
    if (g.goal.kind === 'ms') {
      ok = f.measured < g.goal.below
      rows.push([g.figure, fmtMs(f.measured), '', '', goalText(g.goal), ok ? 'met' : 'MISSED'])
    } else {
      const ratio = f.baseline ? f.measured / f.baseline : NaN
      const more = 1 / ratio - 1
      ok = g.goal.kind === 'ratio' ? ratio >= g.goal.atLeast : more < g.goal.below
      const unit = f.unit ? ` ${f.unit}` : ''
      rows.push([
        g.figure,
        `${fmtNum(f.measured)}${unit}`,
        f.baseline === undefined ? 'n/a' : `${fmtNum(f.baseline)}${unit}`,
        g.goal.kind === 'ratio' ? ratio.toFixed(3) : `${ratio.toFixed(3)} (${more >= 0 ? '+' : ''}${(more * 100).toFixed(1)}% time)`,
        goalText(g.goal),
        ok ? 'met' : 'MISSED',
      ])
    }
    if (ok) met++
    else missed++
    if (f.note) notes.push(`${g.id}: ${f.note}`)
  }
  printTable(rows)
  console.log(`${met} met, ${missed} missed, ${GOALS.length - met - missed} not measured in this run (see above)`)
  for (const n of notes) console.log(`  ${n}`)
}
