import t from 'tap'
import { emulatorAccess } from '../../src/bus/emulator-access.js'
import type { SysfsAccess } from '../../src/bus/port.js'
import type { KernelProfileName } from '../../src/emulator/api.js'
import { createHost } from '../../src/emulator/host.js'
import { BUS, M1, type Outcome, TYPE_DIR, outcome, startRemote } from './helpers.js'

const M2 = '66666666-7777-4888-9999-aaaaaaaaaaaa'

/**
 * A small bus-adapter-like scenario over nothing but {@link SysfsAccess}: reserve adapters, create two
 * matrix devices, share an adapter (T-22), hit the errors of T-16, T-20, T-23, T-24, T-12 and read back
 * every attribute involved. Returns the transcript of every step's value or error.
 */
async function scenario(fs: SysfsAccess): Promise<{ step: string; out: Outcome }[]> {
  const log: { step: string; out: Outcome }[] = []
  const step = async (name: string, fn: () => Promise<unknown>) => void log.push({ step: name, out: await outcome(fn) })
  const m1 = `/sys/devices/vfio_ap/matrix/${M1}`
  const m2 = `/sys/devices/vfio_ap/matrix/${M2}`
  await step('apmask -5,-6', () => fs.write(`${BUS}/apmask`, '-5,-6\n'))
  await step('apmask', () => fs.read(`${BUS}/apmask`))
  await step('aqmask -4,-0x47', () => fs.write(`${BUS}/aqmask`, '-4,-0x47\n'))
  await step('available_instances', () => fs.read(`${TYPE_DIR}/available_instances`))
  await step('create M1', () => fs.write(`${TYPE_DIR}/create`, `${M1}\n`))
  await step('T-16 create M1 again', () => fs.write(`${TYPE_DIR}/create`, `${M1}\n`))
  await step('create M2', () => fs.write(`${TYPE_DIR}/create`, `${M2}\n`))
  await step('ls matrix', () => fs.list('/sys/devices/vfio_ap/matrix'))
  await step('M1 assign_adapter 5', () => fs.write(`${m1}/assign_adapter`, '5\n'))
  await step('M1 assign_adapter 0x06', () => fs.write(`${m1}/assign_adapter`, '0x06\n'))
  await step('T-24 M1 assign_adapter 08', () => fs.write(`${m1}/assign_adapter`, '08\n'))
  await step('T-23 M1 assign_adapter 256', () => fs.write(`${m1}/assign_adapter`, '256\n'))
  await step('M1 assign_domain 4', () => fs.write(`${m1}/assign_domain`, '4\n'))
  await step('T-20 M1 assign_domain 0xab', () => fs.write(`${m1}/assign_domain`, '0xab\n'))
  await step('M1 matrix', () => fs.read(`${m1}/matrix`))
  await step('M1 guest_matrix', () => fs.read(`${m1}/guest_matrix`))
  await step('T-22 M2 assign_adapter 5', () => fs.write(`${m2}/assign_adapter`, '5\n'))
  await step('T-22 M2 assign_domain 0x47', () => fs.write(`${m2}/assign_domain`, '0x47\n'))
  await step('M2 assign_domain 4 (taken by M1)', () => fs.write(`${m2}/assign_domain`, '4\n'))
  await step('M2 matrix', () => fs.read(`${m2}/matrix`))
  await step('05.0004 driver', () => fs.readlink(`${BUS}/devices/05.0004/driver`))
  await step('05.0004 status', () => fs.read(`${BUS}/devices/05.0004/status`))
  await step('M1 driver link', () => fs.readlink(`${m1}/driver`))
  await step('T-12 apmask +5', () => fs.write(`${BUS}/apmask`, '+5\n'))
  await step('ls M1', () => fs.list(m1))
  await step('M1 remove', () => fs.write(`${m1}/remove`, '1\n'))
  await step('ls matrix after remove', () => fs.list('/sys/devices/vfio_ap/matrix'))
  await step('read removed', () => fs.read(`${m1}/matrix`))
  await step('apmask +5', () => fs.write(`${BUS}/apmask`, '+5\n'))
  await step('05.0004 driver after +5', () => fs.readlink(`${BUS}/devices/05.0004/driver`))
  await step('bindings', () => fs.read(`${BUS}/bindings`))
  return log
}

for (const kernel of ['current-6.x', 'legacy-5.x'] as KernelProfileName[]) {
  t.test(`the same scenario on a local and a remote host gives identical results (${kernel})`, async (t) => {
    const local = await scenario(emulatorAccess(createHost({ profile: 'spec-fixture', kernel })))
    const { client } = await startRemote(t, { kernel })
    const remote = await scenario(client)
    t.same(remote, local)
    // The transcript must exercise both paths, or the comparison proves little.
    t.ok(local.filter((s) => s.out.ok).length >= 15, 'successful steps')
    const errnos = new Set(local.flatMap((s) => (s.out.ok ? [] : [s.out.errno])))
    t.ok(errnos.size >= 3, `several distinct errnos (${[...errnos].join(', ')})`)
  })
}
