/** The CLI's plan text: short lists row by row, long ones (and a summary answer) as counts and APQN ranges. */
import t from 'tap'
import { formatApqn } from '../../src/domain/ids.js'
import { renderPlan } from '../../src/cli/format/plan-view.js'
import { planAnswer } from '../../src/service/plan-summary.js'
import type { PlanView } from '../../src/service/index.js'

const U = '4b0e8bd4-0f35-4c4e-9d0e-1f4c4e5a8a01'

function plan(domains: number): PlanView {
  const apqns = Array.from({ length: domains }, (_, d) => formatApqn(5, d))
  return {
    operations: [
      { kind: 'drainQueues', apqns },
      { kind: 'takeFromHost', apmask: '0x', aqmask: '0x', apqns },
      { kind: 'createMdev', uuid: U },
    ],
    violations: [],
    claimedApqns: apqns.map((apqn) => ({ apqn, uuid: U, currentOwner: 'host' })),
    filteredAdapters: [],
    drainedQueues: apqns,
    drainPolicy: { timeoutSeconds: 30, onTimeout: 'wait', devices: [U], deviceCount: 1, defaultApplies: false },
    deferred: [],
  }
}

t.test('a short full plan prints every row', async (t) => {
  const text = renderPlan(planAnswer(plan(3), 'full'))
  t.match(text, /^Operations \(3\):$/m)
  t.match(text, /^ {2}05\.0002\s+4b0e8bd4-\S+\s+host$/m, 'a claimed APQN row')
  t.match(text, /^Drained queues \(3\): 05\.0000 05\.0001 05\.0002$/m)
  t.match(text, /^Drain policy: wait up to 30 s, then keep waiting \(no request lost\); from devices 4b0e8bd4-\S+$/m)
  t.match(text, /Violations: none/)
})

t.test('a long list prints as its count and ranges; a summary answer the same', async (t) => {
  for (const answer of [planAnswer(plan(200), 'full'), planAnswer(plan(200))]) {
    const text = renderPlan(answer)
    t.match(text, /^Claimed APQNs \(200; by current owner: host 200\): 05\.0000-05\.00c7$/m, answer.view)
    t.notMatch(text, /^ {2}05\.0001\s/m, `no claimed rows (${answer.view})`)
    t.match(text, /^Drained queues \(200\): 05\.0000-05\.00c7$/m)
  }
  const summary = renderPlan(planAnswer(plan(200)))
  t.match(summary, /^Operations \(3, by kind in plan order\):$/m)
  t.match(summary, /^\s+1 x drainQueues\s+APQNs 05\.0000-05\.00c7$/m)
  t.match(summary, new RegExp(`^\\s+1 x createMdev\\s+${U}$`, 'm'))
})
