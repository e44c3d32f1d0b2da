import fc from 'fast-check'
import t from 'tap'
import { ApmatrixError } from '../../src/domain/errors.js'
import type { MdevDesired } from '../../src/domain/mdev.js'
import { formatMdevctlDefinition, importMdevctlDefinition, importMdevctlDump, mdevctlDefinitionPath, toMdevctlDefinition } from '../../src/interop/mdevctl.js'
import { arbDevice, errorOf } from './helpers.js'

const U1 = '783e6dbb-ea0e-411f-94e2-717eaad438bf'
const U2 = '4b0f2e7e-1a2b-4c3d-8e9f-0123456789ab'

const dump = (defs: Record<string, unknown>, parent = 'matrix'): string =>
  JSON.stringify([{ [parent]: Object.entries(defs).map(([u, d]) => ({ [u]: d })) }], null, 2)

t.test('export: ordered attrs in 0x hex of the kernel widths, start auto for started (exact text)', async (t) => {
  const device: MdevDesired = {
    uuid: U1,
    spec: { adapters: [5, 0xab], domains: [4, 0x47], controlDomains: [0], state: 'started' },
    labels: { team: 'a' },
    owner: 'alice',
  }
  t.same(toMdevctlDefinition(device), {
    mdev_type: 'vfio_ap-passthrough',
    start: 'auto',
    attrs: [
      { assign_adapter: '0x05' },
      { assign_adapter: '0xab' },
      { assign_domain: '0x0004' },
      { assign_domain: '0x0047' },
      { assign_control_domain: '0x0000' },
    ],
  })
  t.equal(
    formatMdevctlDefinition(device),
    `{
  "mdev_type": "vfio_ap-passthrough",
  "start": "auto",
  "attrs": [
    {
      "assign_adapter": "0x05"
    },
    {
      "assign_adapter": "0xab"
    },
    {
      "assign_domain": "0x0004"
    },
    {
      "assign_domain": "0x0047"
    },
    {
      "assign_control_domain": "0x0000"
    }
  ]
}
`,
  )
  t.same(toMdevctlDefinition({ spec: { adapters: [], domains: [], controlDomains: [], state: 'stopped' } }), {
    mdev_type: 'vfio_ap-passthrough',
    start: 'manual',
    attrs: [],
  })
  t.equal(mdevctlDefinitionPath(U1.toUpperCase()), `/etc/mdevctl.d/matrix/${U1}`)
})

t.test('import: the document libvirt records as mdevctl output (interleaved attrs, other parents skipped)', async (t) => {
  // Shape and values of libvirt's tests/nodedevmdevctldata/mdevctl-list-multiple.json.
  const doc = `[
  {
    "0000:00:02.0": [
      { "200f228a-c80a-4d50-bfb7-f5a0e4e34045": { "mdev_type": "i915-GVTg_V5_4", "start": "manual" } },
      { "435722ea-5f43-468a-874f-da34f1217f13": { "mdev_type": "i915-GVTg_V5_8", "start": "manual", "attrs": [ { "testattr": "42" } ] } }
    ],
    "matrix": [
      {
        "${U1}": {
          "mdev_type": "vfio_ap-passthrough",
          "start": "manual",
          "attrs": [
            { "assign_adapter": "5" },
            { "assign_adapter": "6" },
            { "assign_domain": "0xab" },
            { "assign_control_domain": "0xab" },
            { "assign_domain": "4" },
            { "assign_control_domain": "4" }
          ]
        }
      }
    ]
  }
]`
  const r = importMdevctlDump(doc)
  t.same(r.devices, [{ uuid: U1, spec: { adapters: [5, 6], domains: [4, 0xab], controlDomains: [4, 0xab], state: 'stopped' } }])
  t.same(
    r.skipped.map((s) => [s.parent, s.uuid, s.mdevType]),
    [
      ['0000:00:02.0', '200f228a-c80a-4d50-bfb7-f5a0e4e34045', 'i915-GVTg_V5_4'],
      ['0000:00:02.0', '435722ea-5f43-468a-874f-da34f1217f13', 'i915-GVTg_V5_8'],
    ],
  )
  t.match(r.skipped[0]!.reason, /not the vfio_ap matrix device/)
  t.same(importMdevctlDump('[]'), { devices: [], skipped: [] }, 'mdevctl prints [] when nothing is defined')
  t.same(importMdevctlDump(JSON.parse(doc)).devices, r.devices, 'an already parsed document imports the same')
})

t.test('import: every kstrtoul syntax the kernel accepts (V-6), unassign and ap_config replayed in order', async (t) => {
  const doc = dump({
    [U1.toUpperCase()]: {
      mdev_type: 'vfio_ap-passthrough',
      start: 'auto',
      attrs: [
        { assign_adapter: '010' }, // octal 8
        { assign_adapter: '0X0a' }, // hex 10, capital X
        { assign_adapter: '+5' }, // one leading plus
        { assign_adapter: '0' },
        { assign_adapter: '255\n' }, // one trailing newline
        { assign_domain: '0xFF' },
        { assign_domain: '00' },
        { assign_control_domain: '011' },
        { assign_control_domain: '11' },
        { unassign_adapter: '0' },
        { unassign_adapter: '99' }, // not assigned: a no-op (V-15)
        { assign_adapter: '0x05' }, // already assigned: a no-op (V-10)
        { unassign_control_domain: '9' },
      ],
    },
    [U2]: {
      mdev_type: 'vfio_ap-passthrough',
      start: 'manual',
      attrs: [
        { assign_adapter: '1' },
        // V-23: ap_config replaces the whole matrix: adapters 0 and 3, domain 0x47, control domain 1.
        { ap_config: '0x90,0x000000000000000001,0x4\n' },
        { assign_domain: '2' },
      ],
    },
  })
  t.same(importMdevctlDump(doc).devices, [
    { uuid: U1, spec: { adapters: [5, 8, 10, 255], domains: [0, 255], controlDomains: [11], state: 'started' } },
    { uuid: U2, spec: { adapters: [0, 3], domains: [2, 0x47], controlDomains: [1], state: 'stopped' } },
  ])
})

t.test('import: every violation reported, with JSON path and line', async (t) => {
  const doc = dump({
    [U1]: {
      mdev_type: 'vfio_ap-passthrough',
      start: 'sometimes',
      attrs: [
        { assign_adapter: '08' }, // bad octal digit: EINVAL
        { assign_adapter: '-1' },
        { assign_domain: ' 4' },
        { assign_domain: '' },
        { assign_adapter: '0x' },
        { assign_adapter: '99999999999999999999999' }, // ERANGE
        { remove: '1' },
        { assign_adapter: 5 },
        { assign_adapter: '1', assign_domain: '2' },
        { ap_config: '0x80,0x80' },
      ],
      extra: true,
    },
    'not-a-uuid': { mdev_type: 'vfio_ap-passthrough', start: 'auto' },
    [U2]: { mdev_type: 'vfio_ccw-io', start: 'auto', attrs: {} },
  })
  const e = errorOf(() => importMdevctlDump(doc))
  t.equal(e.code, 'INVALID_ARGUMENT')
  const msgs = e.violations.map((v) => v.message)
  t.equal(e.violations.length, 15, msgs.join('\n'))
  const find = (re: RegExp): string | undefined => msgs.find((m) => re.test(m))
  t.match(find(/\.extra/), /^\$\[0\]\["matrix"\]\[0\]\["783e6dbb-ea0e-411f-94e2-717eaad438bf"\]\.extra \(line 5\): unknown field/)
  t.match(find(/\.start/), /'sometimes' is not 'auto' or 'manual'/)
  t.match(find(/'08'/), /attrs\[0\] \(line 9\): assign_adapter '08': is not a number kstrtoul accepts/)
  t.ok(find(/assign_adapter '-1'/))
  t.ok(find(/assign_domain ' 4'/))
  t.ok(find(/assign_domain '':/))
  t.ok(find(/assign_adapter '0x':/))
  t.match(find(/99999/), /ERANGE/)
  t.match(find(/remove '1'/), /attrs\[6\] \(line 27\): remove '1': unknown attribute; a matrix device accepts assign_adapter/)
  t.match(find(/attrs\[7\]/), /value must be a string, got 5/)
  t.match(find(/attrs\[8\]/), /exactly one attribute name/)
  t.match(find(/ap_config '/), /expects three masks .* got 2/)
  t.match(find(/not-a-uuid/), /is not a UUID/)
  t.match(find(/vfio_ccw-io/), /'vfio_ccw-io' is not 'vfio_ap-passthrough'/)
  t.match(find(/\.attrs \(/), /\[2\].*\.attrs \(line 51\): must be an array/)
  t.match(e.message, /^invalid mdevctl dump: .* \(and 14 more\)$/)
})

t.test('import: ids above the host limits are OUT_OF_RANGE (ENODEV, V-10/V-16)', async (t) => {
  const doc = dump({ [U1]: { mdev_type: 'vfio_ap-passthrough', start: 'auto', attrs: [{ assign_adapter: '256' }, { assign_control_domain: '0x10' }] } })
  const e = errorOf(() => importMdevctlDump(doc))
  t.equal(e.code, 'OUT_OF_RANGE')
  t.equal(e.errno, 'ENODEV')
  t.same(
    e.violations.map((v) => v.id),
    [256],
  )
  const small = errorOf(() => importMdevctlDump(doc.replace('"256"', '"63"'), { limits: { maxAdapterId: 62, maxDomainId: 15 } }))
  t.same(
    small.violations.map((v) => [v.rule, v.id]),
    [
      ['OUT_OF_RANGE', 63],
      ['OUT_OF_RANGE', 16],
    ],
  )
  t.match(small.violations[1]!.message, /16 is above the maximum 15/)
})

t.test('import: malformed documents', async (t) => {
  t.match(errorOf(() => importMdevctlDump('[\n  {\n    "matrix": [,]\n  }\n]')).message, /line 3, column 16: unexpected character ','/)
  t.match(errorOf(() => importMdevctlDump('{"matrix": []}')).message, /a mdevctl dump is a JSON array/)
  t.match(errorOf(() => importMdevctlDump('[{"matrix": {}}]')).message, /must be an array of/)
  t.match(errorOf(() => importMdevctlDump(`[{"matrix": [{"${U1}": {}, "${U2}": {}}]}]`)).message, /exactly one key, the device UUID/)
  t.match(errorOf(() => importMdevctlDump(`[{"matrix": [{"${U1}": 7}]}]`)).message, /a definition must be an object/)
  t.match(
    errorOf(() => importMdevctlDump(`[{"matrix": [{"${U1}": {"mdev_type": "vfio_ap-passthrough", "start": "auto", "start": "manual"}}]}]`)).message,
    /duplicate key 'start'/,
  )
  const twice = `[{"matrix": [{"${U1}": {"mdev_type": "vfio_ap-passthrough", "start": "auto"}}]}, {"matrix": [{"${U1.toUpperCase()}": {"mdev_type": "vfio_ap-passthrough", "start": "auto"}}]}]`
  t.match(errorOf(() => importMdevctlDump(twice)).message, /defined twice \(first at \$\[0\]/)
  t.match(errorOf(() => importMdevctlDump('x'.repeat((1 << 20) + 1))).message, /longer than/)
})

t.test('import of one definition file (mdevctl list --dumpjson --uuid prints this shape)', async (t) => {
  const text = formatMdevctlDefinition({ spec: { adapters: [1], domains: [2], controlDomains: [], state: 'stopped' } })
  t.same(importMdevctlDefinition(U2.toUpperCase(), text), { uuid: U2, spec: { adapters: [1], domains: [2], controlDomains: [], state: 'stopped' } })
  t.match(
    errorOf(() => importMdevctlDefinition(U2, '{"mdev_type": "vfio_ap-passthrough"}')).message,
    /invalid mdevctl definition: \$\.start \(line 1\): missing is not/,
  )
  t.throws(() => importMdevctlDefinition('nope', text), { code: 'INVALID_ARGUMENT' })
})

t.test('property: export then import is the identity', async (t) => {
  fc.assert(
    fc.property(fc.uniqueArray(arbDevice, { maxLength: 5, selector: (d) => d.uuid }), (devices) => {
      const doc = `[${JSON.stringify({ matrix: devices.map((d) => ({ [d.uuid]: toMdevctlDefinition(d) })) }, null, 2)}]`
      t.same(importMdevctlDump(doc).devices, devices)
      for (const d of devices) t.same(importMdevctlDefinition(d.uuid, formatMdevctlDefinition(d)), d)
    }),
    { numRuns: 100 },
  )
})

t.test('fuzz: arbitrary JSON and text only ever fail with INVALID_ARGUMENT / OUT_OF_RANGE', async (t) => {
  const known = (fn: () => unknown): boolean => {
    try {
      fn()
      return true
    } catch (e) {
      return e instanceof ApmatrixError && (e.code === 'INVALID_ARGUMENT' || e.code === 'OUT_OF_RANGE')
    }
  }
  fc.assert(
    fc.property(fc.jsonValue(), (v) => known(() => importMdevctlDump(v)) && known(() => importMdevctlDump(JSON.stringify(v)))),
    { numRuns: 300 },
  )
  fc.assert(
    fc.property(fc.string(), (s) => known(() => importMdevctlDump(s))),
    { numRuns: 300 },
  )
  const attrsDoc = fc.array(
    fc.dictionary(fc.constantFrom('assign_adapter', 'unassign_domain', 'ap_config', 'x', 'constructor', '__proto__'), fc.string(), { minKeys: 1, maxKeys: 1 }),
    { maxLength: 6 },
  )
  fc.assert(
    fc.property(attrsDoc, (attrs) => known(() => importMdevctlDump([{ matrix: [{ [U1]: { mdev_type: 'vfio_ap-passthrough', start: 'auto', attrs } }] }]))),
    { numRuns: 300 },
  )
  t.pass('no other error escaped 900 generated documents')
})
