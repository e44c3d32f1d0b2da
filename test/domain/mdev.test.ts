import t from 'tap'
import { ApmatrixError } from '../../src/domain/errors.js'
import { isUuid, MAX_ID_LIST, normalizeSpec, normalizeUuid } from '../../src/domain/mdev.js'

const U = '4b0f2e7e-1a2b-4c3d-8e9f-0123456789ab'

function violationsOf(fn: () => unknown): ApmatrixError {
  try {
    fn()
  } catch (e) {
    if (e instanceof ApmatrixError) return e
    throw e
  }
  throw new Error('did not throw')
}

t.test('uuids: canonical lowercase inside, any case accepted on input', async (t) => {
  t.ok(isUuid(U))
  t.notOk(isUuid(U.toUpperCase()), 'isUuid is canonical only')
  t.notOk(isUuid(U.slice(0, 35)), 'T-17 35 characters')
  t.notOk(isUuid(`${U}\n`))
  t.notOk(isUuid(U.replace(/-/g, '')))
  t.notOk(isUuid(42))
  t.equal(normalizeUuid(U.toUpperCase()), U, 'the mdev core names the device in lowercase (%pUl)')
  t.equal(normalizeUuid(U), U)
  t.throws(() => normalizeUuid('nope'), { code: 'INVALID_ARGUMENT' })
  t.throws(() => normalizeUuid(`${U} `), { code: 'INVALID_ARGUMENT' })
  t.throws(() => normalizeUuid(undefined), { code: 'INVALID_ARGUMENT' })
})

t.test('normalizeSpec parses, sorts and de-duplicates', async (t) => {
  t.same(normalizeSpec({ adapters: [6, '5', '0x05'], domains: ['0x47', 4, 4], controlDomains: [4], state: 'stopped' }), {
    adapters: [5, 6],
    domains: [4, 0x47],
    controlDomains: [4],
    state: 'stopped',
  })
  t.same(normalizeSpec({}), { adapters: [], domains: [], controlDomains: [], state: 'started' }, 'defaults')
})

t.test('normalizeSpec reports ALL violations', async (t) => {
  const e = violationsOf(() => normalizeSpec({ adapters: [5, 'x', -1], domains: [300], controlDomains: 'nope', state: 'running', extra: 1 }))
  t.equal(e.code, 'INVALID_ARGUMENT', 'syntax errors win over range errors')
  t.match(
    e.violations.map((v) => [v.rule, v.field]),
    [
      ['INVALID_ARGUMENT', 'spec.extra'],
      ['INVALID_ARGUMENT', 'spec.adapters[1]'],
      ['INVALID_ARGUMENT', 'spec.adapters[2]'],
      ['OUT_OF_RANGE', 'spec.domains[0]'],
      ['INVALID_ARGUMENT', 'spec.controlDomains'],
      ['INVALID_ARGUMENT', 'spec.state'],
    ],
  )
  t.equal(e.violations.length, 6)
})

t.test('normalizeSpec range-checks against the host limits (E-3)', async (t) => {
  const limits = { maxAdapterId: 63, maxDomainId: 15 }
  t.same(normalizeSpec({ adapters: [63], domains: [15], controlDomains: [15] }, limits).adapters, [63])
  const e = violationsOf(() => normalizeSpec({ adapters: [64], domains: [16], controlDomains: [0x20] }, limits))
  t.equal(e.code, 'OUT_OF_RANGE')
  t.equal(e.errno, 'ENODEV')
  t.same(
    e.violations.map((v) => [v.rule, v.id]),
    [
      ['OUT_OF_RANGE', 64],
      ['OUT_OF_RANGE', 16],
      ['OUT_OF_RANGE', 0x20],
    ],
  )
})

t.test('normalizeSpec bounds its input', async (t) => {
  t.throws(() => normalizeSpec(null), { code: 'INVALID_ARGUMENT' })
  t.throws(() => normalizeSpec([]), { code: 'INVALID_ARGUMENT' })
  t.throws(() => normalizeSpec({ adapters: new Array(MAX_ID_LIST + 1).fill(1) }), { code: 'INVALID_ARGUMENT' })
  t.same(normalizeSpec({ adapters: new Array(MAX_ID_LIST).fill(1) }).adapters, [1])
})
