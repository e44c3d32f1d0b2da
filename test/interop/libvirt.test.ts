import fc from 'fast-check'
import t from 'tap'
import { ApmatrixError } from '../../src/domain/errors.js'
import { formatLibvirtHostdev } from '../../src/interop/libvirt-hostdev.js'
import { formatLibvirtNodedev, importLibvirtNodedev, libvirtNodedevName } from '../../src/interop/libvirt-nodedev.js'
import { arbDevice, errorOf } from './helpers.js'

const U = '783e6dbb-ea0e-411f-94e2-717eaad438bf'

t.test('nodedev export: libvirt formatnode layout, ap_matrix parent, ordered attrs (exact text)', async (t) => {
  const xml = formatLibvirtNodedev({ uuid: U.toUpperCase(), spec: { adapters: [5, 6], domains: [4, 0xab], controlDomains: [4], state: 'started' } })
  t.equal(
    xml,
    `<device>
  <name>mdev_783e6dbb_ea0e_411f_94e2_717eaad438bf</name>
  <parent>ap_matrix</parent>
  <capability type='mdev'>
    <type id='vfio_ap-passthrough'/>
    <uuid>783e6dbb-ea0e-411f-94e2-717eaad438bf</uuid>
    <attr name='assign_adapter' value='0x05'/>
    <attr name='assign_adapter' value='0x06'/>
    <attr name='assign_domain' value='0x0004'/>
    <attr name='assign_domain' value='0x00ab'/>
    <attr name='assign_control_domain' value='0x0004'/>
  </capability>
</device>
`,
  )
  t.equal(libvirtNodedevName(U), 'mdev_783e6dbb_ea0e_411f_94e2_717eaad438bf')
  t.throws(() => formatLibvirtNodedev({ uuid: 'x', spec: { adapters: [], domains: [], controlDomains: [], state: 'started' } }), { code: 'INVALID_ARGUMENT' })
})

t.test('hostdev export: the guest element names the mdev by uuid (exact text)', async (t) => {
  t.equal(
    formatLibvirtHostdev(U.toUpperCase()),
    `<hostdev mode='subsystem' type='mdev' model='vfio-ap'>
  <source>
    <address uuid='783e6dbb-ea0e-411f-94e2-717eaad438bf'/>
  </source>
</hostdev>
`,
  )
  t.throws(() => formatLibvirtHostdev("'/><evil/>"), { code: 'INVALID_ARGUMENT' })
})

t.test('nodedev import: what virsh nodedev-dumpxml prints (read-only elements ignored, attrs interleaved)', async (t) => {
  const xml = `<?xml version="1.0" encoding="UTF-8"?>
<!-- virsh nodedev-dumpxml mdev_783e6dbb_ea0e_411f_94e2_717eaad438bf_matrix -->
<device>
  <name>mdev_783e6dbb_ea0e_411f_94e2_717eaad438bf_matrix</name>
  <path>/sys/devices/vfio_ap/matrix/783e6dbb-ea0e-411f-94e2-717eaad438bf</path>
  <parent>ap_matrix</parent>
  <driver>
    <name>vfio_mdev</name>
  </driver>
  <capability type="mdev">
    <type id="vfio_ap-passthrough"/>
    <uuid>783E6DBB-EA0E-411F-94E2-717EAAD438BF</uuid>
    <iommuGroup number="0"/>
    <attr name="assign_adapter" value="5"/>
    <attr name="assign_adapter" value="6"/>
    <attr name="assign_domain" value="0xab"/>
    <attr name="assign_control_domain" value="0xab"/>
    <attr name="assign_domain" value="4"/>
    <attr name="assign_control_domain" value="4"/>
    <attr name='assign_adapter' value='&#x30;10'/>
    <attr name='unassign_adapter' value='6'/>
  </capability>
</device>
`
  t.same(importLibvirtNodedev(xml), { uuid: U, spec: { adapters: [5, 8], domains: [4, 0xab], controlDomains: [4, 0xab], state: 'stopped' } })
  t.equal(importLibvirtNodedev(xml, { state: 'started' }).spec.state, 'started', 'the XML has no autostart: the caller chooses')
  t.same(importLibvirtNodedev(xml.replace('ap_matrix', 'matrix')).spec.adapters, [5, 8], "mdevctl's parent name is accepted too")
  t.same(importLibvirtNodedev(xml.replace(/<parent>.*<\/parent>/, '')).uuid, U, 'the parent may be left out')
})

t.test('nodedev import: every violation with its line', async (t) => {
  const xml = `<device extra='1'>
  <name>whatever</name>
  <parent>css_0_0_0072</parent>
  <capability type='mdev'>
    <type id='vfio_ccw-io'/>
    <uuid>not-a-uuid</uuid>
    <attr name='assign_adapter' value='08'/>
    <attr name='assign_domain'/>
    <attr name='matrix' value='05.0004'/>
    <attr name='assign_control_domain' value='0x100' bogus='x'/>
    <iommuGroup number='3'/>
    <unknown/>
  </capability>
</device>`
  const e = errorOf(() => importLibvirtNodedev(xml))
  t.equal(e.code, 'INVALID_ARGUMENT')
  const msgs = e.violations.map((v) => v.message)
  t.same(msgs, [
    "line 1: <device>: unknown attribute 'extra'",
    "line 3: <parent>: 'css_0_0_0072' is not 'ap_matrix', the parent of every matrix device",
    "line 5: <type>: id 'vfio_ccw-io' is not 'vfio_ap-passthrough' (V-3)",
    "line 6: <uuid>: 'not-a-uuid' is not a UUID (8-4-4-4-12 hex digits)",
    'line 8: <attr>: needs both name and value attributes',
    "line 10: <attr>: unknown attribute 'bogus'",
    'line 12: <unknown>: unknown element in the mdev capability; expected one of type, uuid, iommuGroup, parent_addr, attr',
    "line 7: <attr>: assign_adapter '08': is not a number kstrtoul accepts: decimal, 0x hex or 0-prefixed octal (EINVAL, V-6)",
    "line 9: <attr>: matrix '05.0004': unknown attribute; a matrix device accepts assign_adapter, unassign_adapter, assign_domain, unassign_domain, assign_control_domain, unassign_control_domain, ap_config",
    "line 10: <attr>: assign_control_domain '0x100': 256 is above the maximum 255 (ENODEV, V-10/V-15/V-16)",
  ])
  t.match(e.message, /^invalid nodedev XML: line 1: <device>: unknown attribute 'extra' \(and 9 more\)$/)
})

t.test('nodedev import: structure errors', async (t) => {
  const cap = (inner: string): string => `<device><capability type='mdev'>${inner}</capability></device>`
  t.match(errorOf(() => importLibvirtNodedev('<domain/>')).message, /root element of a node-device XML must be <device>/)
  t.match(errorOf(() => importLibvirtNodedev('<device><name>x</name></device>')).message, /exactly one <capability type='mdev'>, found 0/)
  t.match(
    errorOf(() => importLibvirtNodedev(`<device><capability type='pci'><type id='vfio_ap-passthrough'/><uuid>${U}</uuid></capability></device>`)).message,
    /type 'pci' is not 'mdev'/,
  )
  t.match(errorOf(() => importLibvirtNodedev(cap(`<uuid>${U}</uuid>`))).message, /missing <type id='vfio_ap-passthrough'\/>/)
  t.match(errorOf(() => importLibvirtNodedev(cap(`<type id='vfio_ap-passthrough'/>`))).message, /missing <uuid>/)
  t.match(errorOf(() => importLibvirtNodedev(cap(`<type id='vfio_ap-passthrough'/><uuid>${U}</uuid><uuid>${U}</uuid>`))).message, /more than one <uuid>/)
  t.match(
    errorOf(() => importLibvirtNodedev(`<device><parent>ap_matrix</parent><parent>ap_matrix</parent>${cap('').slice(8)}`)).message,
    /more than one <parent>/,
  )
  t.match(errorOf(() => importLibvirtNodedev(`<device><bogus/>${cap('').slice(8)}`)).message, /line 1: <bogus>: unknown element in <device>/)
  for (const name of ['constructor', '__proto__', 'toString', 'hasOwnProperty']) {
    const xml = cap(`<type id='vfio_ap-passthrough'/><uuid>${U}</uuid><attr name='${name}' value='1'/>`)
    t.match(errorOf(() => importLibvirtNodedev(xml)).message, new RegExp(`${name} '1': unknown attribute`), `attr ${name}`)
  }
  t.same(importLibvirtNodedev(cap(`<type id='vfio_ap-passthrough'/><uuid>${U}</uuid>`)).spec, {
    adapters: [],
    domains: [],
    controlDomains: [],
    state: 'stopped',
  })
  const e = errorOf(() =>
    importLibvirtNodedev(cap(`<type id='vfio_ap-passthrough'/><uuid>${U}</uuid><attr name='assign_adapter' value='64'/>`), {
      limits: { maxAdapterId: 63, maxDomainId: 15 },
    }),
  )
  t.equal(e.code, 'OUT_OF_RANGE')
  t.equal(e.errno, 'ENODEV')
})

t.test('XML reader: well-formedness errors name line and column; no DOCTYPE, no unknown entities', async (t) => {
  t.match(
    errorOf(() => importLibvirtNodedev('<device>\n  <name>x</nam>\n</device>')).message,
    /^nodedev XML: line 2, column 12: <\/nam> closes <name> \(line 2\)$/,
  )
  t.match(errorOf(() => importLibvirtNodedev('<device>\n<name>x</name>')).message, /line 2, column 15: <device> \(line 1\) is not closed/)
  t.match(errorOf(() => importLibvirtNodedev('<!DOCTYPE x [<!ENTITY a "b">]><device/>')).message, /a DOCTYPE is not accepted/)
  t.match(errorOf(() => importLibvirtNodedev("<device a='&foo;'/>")).message, /unknown or malformed reference '&foo'/)
  t.match(errorOf(() => importLibvirtNodedev("<device a='1' a='2'/>")).message, /duplicate attribute a in <device>/)
  t.match(errorOf(() => importLibvirtNodedev('<device a=1/>')).message, /attribute value must be quoted/)
  t.match(errorOf(() => importLibvirtNodedev("<device a='<'/>")).message, /'<' in an attribute value/)
  t.match(errorOf(() => importLibvirtNodedev('<device/><device/>')).message, /content after the root element/)
  t.match(errorOf(() => importLibvirtNodedev('')).message, /no root element/)
  t.match(errorOf(() => importLibvirtNodedev('<a>'.repeat(40))).message, /nested deeper than 32/)
  t.match(errorOf(() => importLibvirtNodedev('<device><name>&#0;</name></device>')).message, /unknown or malformed reference '&#0'/)
  const ok = `<device><capability type='mdev'><type id='vfio_ap-passthrough'/><uuid><![CDATA[${U}]]></uuid><attr name='assign_domain' value='&#52;'/><!-- c --><?pi x?></capability></device>`
  t.same(importLibvirtNodedev(ok).spec.domains, [4], 'CDATA, character references, comments and PIs')
})

t.test('property: nodedev export then import is the identity (state supplied by the caller)', async (t) => {
  fc.assert(
    fc.property(arbDevice, (d) => {
      t.same(importLibvirtNodedev(formatLibvirtNodedev(d), { state: d.spec.state }), d)
    }),
    { numRuns: 200 },
  )
})

t.test('fuzz: arbitrary text only ever fails with INVALID_ARGUMENT / OUT_OF_RANGE', async (t) => {
  const base = formatLibvirtNodedev({ uuid: U, spec: { adapters: [1], domains: [2], controlDomains: [3], state: 'started' } })
  const known = (s: string): boolean => {
    try {
      importLibvirtNodedev(s)
      return true
    } catch (e) {
      return e instanceof ApmatrixError && (e.code === 'INVALID_ARGUMENT' || e.code === 'OUT_OF_RANGE')
    }
  }
  fc.assert(fc.property(fc.string(), known), { numRuns: 300 })
  // Mutations of a valid document: a slice of it cut out, or junk spliced in.
  fc.assert(
    fc.property(fc.nat(base.length), fc.nat(40), fc.string({ maxLength: 8 }), (at, len, junk) => known(base.slice(0, at) + junk + base.slice(at + len))),
    { numRuns: 500 },
  )
  t.pass('no other error escaped 800 generated documents')
})
