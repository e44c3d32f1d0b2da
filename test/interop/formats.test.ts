import fc from 'fast-check'
import t from 'tap'
import { exportMatrixDevice, EXPORT_FORMATS, importMatrixDevices, IMPORT_FORMATS } from '../../src/interop/formats.js'
import { parseJsonWithLines } from '../../src/interop/json-lines.js'
import { escapeXmlAttr, escapeXmlText, parseXml } from '../../src/interop/xml.js'

const U = '4b0f2e7e-1a2b-4c3d-8e9f-0123456789ab'
const device = { uuid: U, spec: { adapters: [5], domains: [4], controlDomains: [11], state: 'stopped' as const } }

t.test('exportMatrixDevice: one document per format, with its media type', async (t) => {
  t.same(EXPORT_FORMATS, ['mdevctl', 'libvirt-nodedev', 'libvirt-hostdev'])
  const m = exportMatrixDevice(device, 'mdevctl')
  t.equal(m.contentType, 'application/json')
  t.equal(m.path, `/etc/mdevctl.d/matrix/${U}`)
  t.same(JSON.parse(m.body), {
    mdev_type: 'vfio_ap-passthrough',
    start: 'manual',
    attrs: [{ assign_adapter: '0x05' }, { assign_domain: '0x0004' }, { assign_control_domain: '0x000b' }],
  })
  const n = exportMatrixDevice(device, 'libvirt-nodedev')
  t.equal(n.contentType, 'application/xml')
  t.match(n.body, /^<device>\n {2}<name>mdev_4b0f2e7e_1a2b_4c3d_8e9f_0123456789ab<\/name>/)
  const h = exportMatrixDevice(device, 'libvirt-hostdev')
  t.match(h.body, new RegExp(`<address uuid='${U}'/>`))
  t.throws(() => exportMatrixDevice(device, 'virsh'), {
    code: 'INVALID_ARGUMENT',
    message: /format: "virsh" is not one of mdevctl, libvirt-nodedev, libvirt-hostdev/,
  })
})

t.test('importMatrixDevices: each import format reads what the matching export wrote', async (t) => {
  t.same(IMPORT_FORMATS, ['mdevctl', 'libvirt-nodedev'])
  const def = exportMatrixDevice(device, 'mdevctl').body
  const dump = `[{"matrix": [{"${U}": ${def}}], "0000:00:02.0": [{"${'1'.repeat(8)}-2222-3333-4444-555555555555": {"mdev_type": "i915-GVTg_V5_4", "start": "auto"}}]}]`
  const r = importMatrixDevices(dump, 'mdevctl')
  t.same(r.devices, [device])
  t.equal(r.skipped.length, 1)
  t.same(importMatrixDevices(exportMatrixDevice(device, 'libvirt-nodedev').body, 'libvirt-nodedev', { state: 'stopped' }), { devices: [device], skipped: [] })
  t.throws(() => importMatrixDevices({}, 'libvirt-nodedev'), { code: 'INVALID_ARGUMENT', message: /must be XML text/ })
  t.throws(() => importMatrixDevices('[]', 'libvirt-hostdev'), { code: 'INVALID_ARGUMENT', message: /is not one of mdevctl, libvirt-nodedev$/ })
})

t.test('parseJsonWithLines: the same value as JSON.parse, plus the line of each object and array', async (t) => {
  fc.assert(
    fc.property(fc.jsonValue(), fc.constantFrom(0, 2), (v, indent) => {
      const text = JSON.stringify(v, null, indent)
      t.same(parseJsonWithLines(text).value, JSON.parse(text))
    }),
    { numRuns: 300 },
  )
  const r = parseJsonWithLines('[\n  {\n    "a": [\n      1\n    ],\n    "__proto__": {}\n  }\n]')
  const arr = r.value as Array<{ a: number[] }>
  t.equal(r.lineOf(arr), 1)
  t.equal(r.lineOf(arr[0]!), 2)
  t.equal(r.lineOf(arr[0]!.a), 3)
  t.ok(Object.hasOwn(arr[0], '__proto__'), '__proto__ stays an own key, as with JSON.parse')
  t.equal(Object.getPrototypeOf(arr[0]), Object.prototype)
  for (const bad of ['', '[1,]', '{"a":1,}', '01', '"\\x"', '"a\nb"', 'tru', '[1] 2', '{"a" 1}', '['.repeat(70) + ']'.repeat(70)]) {
    t.throws(() => parseJsonWithLines(bad), { code: 'INVALID_ARGUMENT' }, JSON.stringify(bad))
  }
  t.throws(() => parseJsonWithLines('{"a": 1, "a": 2}'), { message: /line 1, column 10: duplicate key 'a'/ })
})

t.test('XML escaping round-trips through the reader', async (t) => {
  fc.assert(
    fc.property(fc.string({ unit: 'grapheme' }), (s) => {
      const el = parseXml(`<a v='${escapeXmlAttr(s)}'>${escapeXmlText(s.replace(/\r/g, ''))}</a>`)
      t.equal(el.attrs.get('v'), s)
      t.equal(el.text, s.replace(/\r/g, ''))
    }),
    { numRuns: 300 },
  )
})
