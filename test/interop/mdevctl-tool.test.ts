/**
 * apmatrix ↔ the real mdevctl (Debian package `mdevctl`). The tests write definition files where mdevctl
 * keeps them (/etc/mdevctl.d/matrix/<uuid>, so they need root), let mdevctl list them, and import what it
 * prints. mdevctl lists definitions without the parent device existing in sysfs, so this runs on any
 * Linux machine, not only on s390 (verified with mdevctl 1.2.0: `list --defined --dumpjson`, with and
 * without `--parent matrix`, and `--uuid`). Every file written is removed at teardown, also on failure.
 */
import crypto from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import fc from 'fast-check'
import t, { type Test } from 'tap'
import { formatMdevctlDefinition, importMdevctlDefinition, importMdevctlDump, MDEVCTL_CONFIG_DIR, mdevctlDefinitionPath } from '../../src/interop/mdevctl.js'
import { allIds, arbDevice, newDevice } from './helpers.js'
import { requireOrSkip } from '../helpers/required.js'
import { canWrite, run, withTools } from './tools.js'

/** Creates /etc/mdevctl.d/matrix if needed; removes every file `write` created, and the folder if it made it. */
function definitions(t: Test): { write(uuid: string, text: string): string; track(uuid: string): void } {
  const dir = path.join(MDEVCTL_CONFIG_DIR, 'matrix')
  const madeDir = !fs.existsSync(dir)
  fs.mkdirSync(dir, { recursive: true })
  const files: string[] = []
  t.teardown(() => {
    for (const f of files) fs.rmSync(f, { force: true })
    if (madeDir) {
      try {
        fs.rmdirSync(dir) // only when empty: another run may have put its own files there meanwhile
      } catch {}
    }
  })
  return {
    write(uuid, text) {
      const file = mdevctlDefinitionPath(uuid)
      files.push(file)
      fs.writeFileSync(file, text)
      return file
    },
    track(uuid) {
      files.push(mdevctlDefinitionPath(uuid))
    },
  }
}

function mdevctl(t: Test, args: string[]): string {
  const r = run('mdevctl', args)
  t.equal(r.status, 0, `mdevctl ${args.join(' ')} exits 0${r.stderr ? `; stderr: ${r.stderr.trim()}` : ''}`)
  return r.stdout
}

withTools(t, 'real mdevctl', ['mdevctl'], 'mdevctl', async (t) => {
  if (!canWrite(MDEVCTL_CONFIG_DIR)) {
    // Never runs the body: a loud skip, or a failure where the tools are required.
    requireOrSkip(t, 'mdevctl round trips', `${MDEVCTL_CONFIG_DIR} is not writable by this user: the mdevctl tests need root`, async () => {})
    return
  }

  t.test('mdevctl lists what apmatrix exported; importing its dump gives the devices back', async (t) => {
    const defs = definitions(t)
    const devices = [
      newDevice({ adapters: [5, 6], domains: [4, 0xab], controlDomains: [4, 0xab] }),
      newDevice({ state: 'stopped' }),
      newDevice({ adapters: allIds(), domains: allIds(), controlDomains: allIds() }),
      newDevice({ controlDomains: [0x47], state: 'stopped' }),
      ...fc.sample(arbDevice, { numRuns: 6, seed: 4 }).map((d) => newDevice(d.spec)),
    ]
    for (const d of devices) defs.write(d.uuid, formatMdevctlDefinition(d))
    const ours = new Set(devices.map((d) => d.uuid))

    for (const args of [
      ['list', '--defined', '--dumpjson', '--parent', 'matrix'],
      ['list', '--defined', '--dumpjson'],
    ]) {
      const imported = importMdevctlDump(mdevctl(t, args))
      const back = imported.devices.filter((d) => ours.has(d.uuid))
      t.same(
        back.sort((a, b) => a.uuid.localeCompare(b.uuid)),
        [...devices].sort((a, b) => a.uuid.localeCompare(b.uuid)),
        `mdevctl ${args.join(' ')}: lossless round trip of ${devices.length} devices`,
      )
    }
    // With --uuid, mdevctl prints the bare definition of that device.
    for (const d of devices.slice(0, 4)) {
      t.same(importMdevctlDefinition(d.uuid, mdevctl(t, ['list', '--defined', '--dumpjson', '--uuid', d.uuid])), d, `--uuid ${d.uuid}`)
    }
    // mdevctl's own human-readable listing agrees on type and start mode.
    const text = mdevctl(t, ['list', '--defined', '--parent', 'matrix'])
    for (const d of devices) {
      t.match(text, new RegExp(`^${d.uuid} matrix vfio_ap-passthrough ${d.spec.state === 'started' ? 'auto' : 'manual'}`, 'm'))
    }
  })

  t.test('mdevctl define --jsonfile reads the export and writes the same definition', async (t) => {
    const defs = definitions(t)
    const d = newDevice({ adapters: [0, 0x3f], domains: [1, 2, 3], controlDomains: [0xff], state: 'stopped' })
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'apmatrix-mdevctl-'))
    t.teardown(() => fs.rmSync(tmp, { recursive: true, force: true }))
    const json = path.join(tmp, 'export.json')
    fs.writeFileSync(json, formatMdevctlDefinition(d))
    defs.track(d.uuid)
    mdevctl(t, ['define', '--jsonfile', json, '--parent', 'matrix', '--uuid', d.uuid])
    const written = fs.readFileSync(mdevctlDefinitionPath(d.uuid), 'utf8')
    t.equal(written.trimEnd(), formatMdevctlDefinition(d).trimEnd(), 'mdevctl serializes it exactly as apmatrix exports it')
    t.same(importMdevctlDefinition(d.uuid, written), d)
    // A change made with mdevctl itself imports too.
    mdevctl(t, ['modify', '--uuid', d.uuid, '--addattr=unassign_domain', '--value=2'])
    mdevctl(t, ['modify', '--uuid', d.uuid, '--auto'])
    const dump = importMdevctlDump(mdevctl(t, ['list', '--defined', '--dumpjson', '--parent', 'matrix']))
    t.same(
      dump.devices.find((x) => x.uuid === d.uuid),
      { uuid: d.uuid, spec: { ...d.spec, domains: [1, 3], state: 'started' } },
      'mdevctl modify --addattr=unassign_domain and --auto are imported',
    )
  })

  t.test('hand-written definitions with every number syntax survive mdevctl verbatim', async (t) => {
    const defs = definitions(t)
    const uuid = crypto.randomUUID()
    defs.write(
      uuid,
      JSON.stringify({
        mdev_type: 'vfio_ap-passthrough',
        start: 'manual',
        attrs: [
          { assign_adapter: '010' },
          { assign_adapter: '0X0a' },
          { assign_adapter: '+5' },
          { assign_domain: '4\n' },
          { unassign_adapter: '8' },
          { assign_control_domain: '0xb' },
          { ap_config: '0x0,0x0,0x0' },
          { assign_adapter: '077' },
        ],
      }),
    )
    const dump = mdevctl(t, ['list', '--defined', '--dumpjson', '--parent', 'matrix'])
    t.same(
      importMdevctlDump(dump).devices.find((d) => d.uuid === uuid),
      { uuid, spec: { adapters: [0o77], domains: [], controlDomains: [], state: 'stopped' } },
    )
  })

  t.test('a definition mdevctl lists but apmatrix refuses is reported with its path and line', async (t) => {
    const defs = definitions(t)
    const uuid = crypto.randomUUID()
    defs.write(uuid, JSON.stringify({ mdev_type: 'vfio_ap-passthrough', start: 'auto', attrs: [{ assign_adapter: '08' }] }))
    // --uuid keeps this refused definition out of whole-directory dumps a concurrent run may be importing.
    const def = mdevctl(t, ['list', '--defined', '--dumpjson', '--uuid', uuid])
    t.throws(() => importMdevctlDefinition(uuid, def), { code: 'INVALID_ARGUMENT', message: /\$\.attrs\[0\] \(line 5\): assign_adapter '08'/ })
  })
})
