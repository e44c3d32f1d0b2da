/**
 * The report of a wait that timed out (src/cli/format/wait-report.ts) for each kind of target: converged,
 * held by a guest, not yet reconciled, being deleted, missing, and no poll answered at all. The end-to-end
 * case (a guest holding a device during `apply --timeout`) is in client-verbs.test.ts.
 */
import t from 'tap'
import type { Mdev } from '../../src/cli/client/api-types.js'
import { conditionsCell } from '../../src/cli/format/conditions.js'
import { formatWaitTimeout } from '../../src/cli/format/wait-report.js'

const A = 'aaaaaaaa-0000-4000-8000-000000000001'
const B = 'bbbbbbbb-0000-4000-8000-000000000002'

function mdev(uuid: string, generation: number, observed: number | undefined, conds: Array<[string, string, string, string]>): Mdev {
  return {
    metadata: { uuid, generation } as Mdev['metadata'],
    spec: { adapters: [5], domains: [4], controlDomains: [], state: 'started', drain: null },
    status: {
      ...(observed === undefined ? {} : { observedGeneration: observed }),
      conditions: conds.map(([type, status, reason, message]) => ({
        type,
        status,
        reason,
        message,
        lastTransitionTime: '2026-01-01T00:00:00.000Z',
        observedGeneration: observed ?? 0,
      })),
    },
  } as Mdev
}

const held = mdev(B, 2, 2, [
  ['Ready', 'False', 'WaitingForGuest', 'matrix device is open by guest vm1'],
  ['Progressing', 'True', 'Reconciling', 'bus operations are pending'],
  ['Degraded', 'False', 'Healthy', 'no fault'],
  ['AdapterFiltered', 'False', 'AllAdaptersPassed', 'every configured adapter of the matrix reaches the guest'],
  ['InUseByGuest', 'True', 'GuestAttached', 'open by guest vm1'],
])
const readyOne = mdev(A, 1, 1, [['Ready', 'True', 'Active', 'the matrix device exists on the bus with the desired matrix']])

t.test('converged devices are Ready; the others show their conditions (AdapterFiltered only when True)', async (t) => {
  const text = formatWaitTimeout(
    [
      { uuid: A, generation: 1 },
      { uuid: B, generation: 2 },
    ],
    [
      { target: { uuid: A, generation: 1 }, done: true, summary: 'Ready (Active)', device: readyOne },
      { target: { uuid: B, generation: 2 }, done: false, summary: 'WaitingForGuest: matrix device is open by guest vm1', device: held },
    ],
    1500,
  )
  t.equal(
    text,
    `timed out after 1.5s waiting for 1 of 2 device(s); the last state the server reported:
  ${A}: Ready (Active)
  ${B}: not Ready: WaitingForGuest: matrix device is open by guest vm1
    TYPE          STATUS  REASON           MESSAGE
    Ready         False   WaitingForGuest  matrix device is open by guest vm1
    Progressing   True    Reconciling      bus operations are pending
    Degraded      False   Healthy          no fault
    InUseByGuest  True    GuestAttached    open by guest vm1`,
  )
})

t.test('a status older than the generation waited for says so; deletions and missing devices', async (t) => {
  const stale = mdev(A, 3, 2, [['Ready', 'True', 'Active', 'on the bus']])
  const text = formatWaitTimeout(
    [
      { uuid: A, generation: 3 },
      { uuid: B, generation: 1, gone: true },
    ],
    [
      { target: { uuid: A, generation: 3 }, done: false, summary: 'waiting for the reconciler (generation 3, observed 2)', device: stale },
      { target: { uuid: B, generation: 1, gone: true }, done: false, summary: 'Deleting', device: held },
    ],
    2000,
  )
  t.match(
    text,
    `${A}: not Ready: waiting for the reconciler (generation 3, observed 2)\n    (status of generation 2; the reconciler has not reported generation 3 yet)\n`,
  )
  t.match(text, `${B}: still being deleted\n`)
  t.match(text, /InUseByGuest\s+True\s+GuestAttached/)
  const missing = formatWaitTimeout(
    [{ uuid: A, generation: 1 }],
    [{ target: { uuid: A, generation: 1 }, done: false, summary: 'missing (not in the store)' }],
    1000,
  )
  t.match(missing, `${A}: missing (not in the store)`)
})

t.test('no poll answered before the deadline: said as such, no state invented', async (t) => {
  const text = formatWaitTimeout([{ uuid: A, generation: 1 }], undefined, 300)
  t.equal(
    text,
    `timed out after 300ms: the server answered no poll in time; 1 device(s) not confirmed:\n  ${A}: unknown (the server did not answer a poll before the deadline)`,
  )
})

t.test('the CONDITIONS cell of mdev list', async (t) => {
  t.equal(conditionsCell(readyOne), '-')
  t.equal(conditionsCell(held), 'Progressing,InUseByGuest')
  const filtered = mdev(A, 1, 1, [
    ['Degraded', 'True', 'AdapterFiltered', 'the guest does not get adapters 05'],
    ['AdapterFiltered', 'True', 'QueueNotBound', '...'],
  ])
  t.equal(conditionsCell(filtered), 'Degraded(AdapterFiltered)', 'not said twice')
})
