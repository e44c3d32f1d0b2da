/**
 * apmatrix's libvirt XML against libvirt's own schemas: `virt-xml-validate` (Debian package
 * `libvirt-clients`; it runs `xmllint`, package `libxml2-utils`, which libvirt-clients does not pull in).
 * Each positive check has a negative twin, so a validator that accepts everything fails the test.
 */
import crypto from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t, { type Test } from 'tap'
import { formatLibvirtHostdev } from '../../src/interop/libvirt-hostdev.js'
import { formatLibvirtNodedev, importLibvirtNodedev } from '../../src/interop/libvirt-nodedev.js'
import { allIds, newDevice } from './helpers.js'
import { run, withTools } from './tools.js'

/** A minimal s390 KVM guest with `devices` inside <devices>. */
function domainXml(devices: string): string {
  const indented = devices.trimEnd().replace(/^/gm, '    ')
  return `<domain type='kvm'>
  <name>apmatrix-validate</name>
  <memory unit='MiB'>512</memory>
  <os>
    <type arch='s390x' machine='s390-ccw-virtio'>hvm</type>
  </os>
  <devices>
${indented}
  </devices>
</domain>
`
}

function validator(t: Test): (xml: string, schema: 'nodedev' | 'domain') => { ok: boolean; output: string } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'apmatrix-virt-xml-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  let n = 0
  return (xml, schema) => {
    const file = path.join(dir, `${schema}-${n++}.xml`)
    fs.writeFileSync(file, xml)
    const r = run('virt-xml-validate', [file, schema])
    return { ok: r.status === 0, output: `${r.stdout}${r.stderr}`.trim() }
  }
}

withTools(t, 'virt-xml-validate', ['virt-xml-validate', 'xmllint'], 'libvirt-clients libxml2-utils', async (t) => {
  t.test('node-device XML validates against the nodedev schema', async (t) => {
    const validate = validator(t)
    for (const d of [
      newDevice({ adapters: [5, 6], domains: [4, 0xab], controlDomains: [4] }),
      newDevice({ state: 'stopped' }),
      newDevice({ adapters: allIds(), domains: allIds(), controlDomains: allIds() }),
    ]) {
      const xml = formatLibvirtNodedev(d)
      const r = validate(xml, 'nodedev')
      t.ok(r.ok, `nodedev of ${d.spec.adapters.length}x${d.spec.domains.length} device validates: ${r.output}`)
      t.same(importLibvirtNodedev(xml, { state: d.spec.state }), d, 'and imports back')
    }
  })

  t.test('the validator rejects broken node-device XML (so the check above can fail)', async (t) => {
    const validate = validator(t)
    const xml = formatLibvirtNodedev(newDevice({ adapters: [5], domains: [4] }))
    for (const [what, broken] of [
      ['attr without value', xml.replace(" value='0x05'", '')],
      ['capability element renamed', xml.replace("<type id='vfio_ap-passthrough'/>", "<kind id='vfio_ap-passthrough'/>")],
      ['uuid not a UUID', xml.replace(/<uuid>[^<]*<\/uuid>/, '<uuid>nope</uuid>')],
      ['no name', xml.replace(/<name>[^<]*<\/name>/, '')],
    ] as const) {
      t.not(broken, xml, `${what}: the document was changed`)
      const r = validate(broken, 'nodedev')
      t.notOk(r.ok, `${what}: rejected (${r.output.split('\n').pop()})`)
    }
  })

  t.test('the hostdev snippet validates inside a minimal domain XML; broken ones do not', async (t) => {
    const validate = validator(t)
    const hostdev = formatLibvirtHostdev(crypto.randomUUID())
    const ok = validate(domainXml(hostdev), 'domain')
    t.ok(ok.ok, `domain with the vfio-ap hostdev validates: ${ok.output}`)
    for (const [what, broken] of [
      ['unknown model', hostdev.replace("model='vfio-ap'", "model='vfio-bogus'")],
      ['uuid not a UUID', hostdev.replace(/uuid='[^']*'/, "uuid='not-a-uuid'")],
      ['address without uuid', hostdev.replace(/ uuid='[^']*'/, '')],
    ] as const) {
      t.not(broken, hostdev, `${what}: the snippet was changed`)
      const r = validate(domainXml(broken), 'domain')
      t.notOk(r.ok, `${what}: rejected (${r.output.split('\n').pop()})`)
    }
  })
})
