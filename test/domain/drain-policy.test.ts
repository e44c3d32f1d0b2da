/** The drain policy (domain/drain-policy.ts): parsing in the spec, completion with the default, the strictest of several. */
import t from 'tap'
import { normalizeSpec, sameBusSpec, sameSpec } from '../../src/domain/mdev.js'
import { resolveDrainPolicy, stricterDrainPolicy } from '../../src/domain/drain-policy.js'
import { ApmatrixError } from '../../src/domain/errors.js'

const DEFAULT = { timeoutMs: 30_000, onTimeout: 'flush' as const }

t.test('spec.drain: parsed, bounded, unknown fields refused; absent or empty stores none', async (t) => {
  t.same(normalizeSpec({ adapters: [5], domains: [4], drain: { timeoutSeconds: 0, onTimeout: 'wait' } }).drain, { timeoutSeconds: 0, onTimeout: 'wait' })
  t.same(normalizeSpec({ adapters: [5], domains: [4], drain: { timeoutSeconds: 3600 } }).drain, { timeoutSeconds: 3600 })
  t.notOk('drain' in normalizeSpec({ adapters: [5], domains: [4] }))
  t.notOk('drain' in normalizeSpec({ adapters: [5], domains: [4], drain: {} }))
  t.notOk('drain' in normalizeSpec({ adapters: [5], domains: [4], drain: null }))
  for (const [drain, field] of [
    [{ timeoutSeconds: 3601 }, 'spec.drain.timeoutSeconds'],
    [{ timeoutSeconds: '10' }, 'spec.drain.timeoutSeconds'],
    [{ timeoutSeconds: 0.5 }, 'spec.drain.timeoutSeconds'],
    [{ onTimeout: 'Wait' }, 'spec.drain.onTimeout'],
    [{ extra: 1 }, 'spec.drain.extra'],
    [[], 'spec.drain'],
  ] as const) {
    let err: unknown
    try {
      normalizeSpec({ adapters: [5], domains: [4], drain })
    } catch (e) {
      err = e
    }
    t.ok(err instanceof ApmatrixError && err.code === 'INVALID_ARGUMENT', `${JSON.stringify(drain)}: INVALID_ARGUMENT`)
    t.ok(err instanceof ApmatrixError && err.violations.some((v) => v.field === field), `${JSON.stringify(drain)}: names ${field}`)
  }
})

t.test('a spec differing only in its drain policy is another spec, the same device on the bus', async (t) => {
  const a = normalizeSpec({ adapters: [5], domains: [4] })
  const b = normalizeSpec({ adapters: [5], domains: [4], drain: { onTimeout: 'wait' } })
  t.equal(sameSpec(a, b), false)
  t.equal(sameBusSpec(a, b), true)
  t.equal(sameSpec(b, normalizeSpec({ adapters: [5], domains: [4], drain: { onTimeout: 'wait' } })), true)
})

t.test('resolution: each queue its devices policy or the default; the strictest wins', async (t) => {
  const mdevs = [
    { uuid: 'a', adapters: [5], domains: [4], deleting: false, drain: { timeoutSeconds: 60 } },
    { uuid: 'b', adapters: [6], domains: [4], deleting: false, drain: { timeoutSeconds: 5, onTimeout: 'wait' as const } },
    { uuid: 'gone', adapters: [7], domains: [4], deleting: true, drain: { timeoutSeconds: 900, onTimeout: 'wait' as const } },
  ]
  t.same(resolveDrainPolicy(['05.0004'], mdevs, DEFAULT), { timeoutMs: 60_000, onTimeout: 'flush', takers: { '05.0004': ['a'] } })
  t.same(resolveDrainPolicy(['05.0004', '06.0004'], mdevs, DEFAULT), {
    timeoutMs: 60_000,
    onTimeout: 'wait',
    takers: { '05.0004': ['a'], '06.0004': ['b'] },
  })
  t.same(resolveDrainPolicy(['07.0004'], mdevs, DEFAULT), { ...DEFAULT, takers: { '07.0004': [] } }, 'a device being deleted takes nothing')
  t.same(resolveDrainPolicy(['06.0004', '07.0004'], mdevs, DEFAULT), { timeoutMs: 30_000, onTimeout: 'wait', takers: { '06.0004': ['b'], '07.0004': [] } })
  t.same(stricterDrainPolicy({ timeoutMs: 1, onTimeout: 'wait' }, { timeoutMs: 2, onTimeout: 'flush' }), { timeoutMs: 2, onTimeout: 'wait' })
})
