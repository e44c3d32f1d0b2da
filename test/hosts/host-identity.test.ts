/**
 * Identity of real hosts (src/hosts/host-identity.ts, docs/hosts.md "Identity"): the machine id from
 * /proc/sysinfo as the s390 kernel prints it (arch/s390/kernel/sysinfo.c: `Manufacturer:`, `Type:`,
 * `Sequence Code:`, `LPAR Number:` in decimal, `VM00 Name:` under a hypervisor), /etc/machine-id off s390,
 * a derived id for a mount; the boot id from the kernel, a configured file, or the stable fallback.
 */
import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { HostIdentity, machineIdFromSysinfo, parseSysinfo } from '../../src/hosts/host-identity.js'
import { tempDir } from '../bus/sysfs-tree.js'

const LPAR_SYSINFO = `Manufacturer:         IBM             
Type:                 3931
Model:                701              A01             
Sequence Code:        00000000000DA1E7
Plant:                02
Model Capacity:       701              00000000

CPUs Total:           16
CPUs Configured:      8

LPAR Number:          27
LPAR Characteristics: Shared 
LPAR Name:            LPAR1B  
LPAR Adjustment:      205
`

const ZVM_SYSINFO = `${LPAR_SYSINFO}
VM00 Name:            LINUX01 
VM00 Control Program: z/VM    7.3.0   
VM00 Adjustment:      62
`

function fakeProc(t: Parameters<typeof tempDir>[0], sysinfo: string | null, bootId = 'b0b0b0b0-1111-4222-8333-444444444444'): { proc: string; etc: string } {
  const proc = tempDir(t)
  const etc = tempDir(t)
  if (sysinfo !== null) fs.writeFileSync(path.join(proc, 'sysinfo'), sysinfo)
  fs.mkdirSync(path.join(proc, 'sys/kernel/random'), { recursive: true })
  fs.writeFileSync(path.join(proc, 'sys/kernel/random/boot_id'), `${bootId}\n`)
  fs.writeFileSync(path.join(proc, 'sys/kernel/osrelease'), '6.8.0-s390x\n')
  fs.writeFileSync(path.join(etc, 'machine-id'), 'deadbeefdeadbeefdeadbeefdeadbeef\n')
  return { proc, etc }
}

t.test('/proc/sysinfo: CEC and partition', async (t) => {
  const f = parseSysinfo(LPAR_SYSINFO)
  t.equal(f.get('Manufacturer'), 'IBM', 'padding trimmed')
  t.equal(f.get('LPAR Number'), '27')
  t.equal(machineIdFromSysinfo(f), 'IBM-3931-00000000000DA1E7-LPAR27')
  t.equal(machineIdFromSysinfo(parseSysinfo(ZVM_SYSINFO)), 'IBM-3931-00000000000DA1E7-LPAR27-VM-LINUX01', 'a z/VM guest is told apart from its LPAR')
  t.equal(machineIdFromSysinfo(parseSysinfo('Type: 3931\n')), undefined, 'incomplete: no machine id from it')
})

t.test("the machine's own /sys: machine id from /proc/sysinfo, boot id and kernel from /proc", async (t) => {
  const { proc, etc } = fakeProc(t, LPAR_SYSINFO)
  const id = new HostIdentity({ root: '/sys', procDir: proc, etcDir: etc })
  t.equal(await id.machineId(), 'IBM-3931-00000000000DA1E7-LPAR27')
  t.equal(await id.bootId(), 'b0b0b0b0-1111-4222-8333-444444444444')
  t.equal(await id.kernel(), '6.8.0-s390x')
  fs.writeFileSync(path.join(proc, 'sys/kernel/random/boot_id'), 'c1c1c1c1-1111-4222-8333-444444444444\n')
  t.equal(await id.bootId(), 'c1c1c1c1-1111-4222-8333-444444444444', 'read at every call: a reboot shows')
})

t.test('not s390: /etc/machine-id', async (t) => {
  const { proc, etc } = fakeProc(t, null)
  t.equal(await new HostIdentity({ root: '/sys/', procDir: proc, etcDir: etc }).machineId(), 'deadbeefdeadbeefdeadbeefdeadbeef')
})

t.test('a mount: a machine id derived from host and root, the stable boot id fallback, or a boot-id file', async (t) => {
  const root = tempDir(t)
  const { proc, etc } = fakeProc(t, LPAR_SYSINFO)
  const a = new HostIdentity({ root, procDir: proc, etcDir: etc })
  t.match(await a.machineId(), /^sysfs-[0-9a-f]{16}$/, "not this machine's sysinfo: it describes another sysfs")
  t.equal(await a.machineId(), await new HostIdentity({ root: `${root}/` }).machineId(), 'stable for the same root')
  t.not(await a.machineId(), await new HostIdentity({ root: tempDir(t) }).machineId(), 'different roots, different machines')
  t.match(await a.bootId(), /^static-[0-9a-f]{16}$/)
  t.equal(await a.bootId(), await a.bootId())
  t.equal(await a.kernel(), '')
  const file = path.join(tempDir(t), 'boot_id')
  fs.writeFileSync(file, '12345678-aaaa-4bbb-8ccc-dddddddddddd\n')
  t.equal(await new HostIdentity({ root, bootIdFile: file }).bootId(), '12345678-aaaa-4bbb-8ccc-dddddddddddd')
  await t.rejects(new HostIdentity({ root, bootIdFile: path.join(root, 'missing') }).bootId(), /cannot be read or is empty/)
})
