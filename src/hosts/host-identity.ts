/**
 * Who a real host is (docs/api.md (Resources) Host: machineId, bootId), for the `sysfs` driver and `apmatrix agent`
 * (docs/hosts.md "Identity"):
 *
 * machineId, stable across reboots, first that applies:
 * 1. the sysfs root is this machine's `/sys` and `/proc/sysinfo` names the machine (s390):
 *    `<Manufacturer>-<Type>-<Sequence Code>-LPAR<LPAR Number>`, plus `-VM-<VM00 Name>` under a hypervisor
 *    (z/VM, KVM). The part before `-LPAR` names the CEC, whose crypto adapters its LPARs share (the
 *    Kubernetes CEX device plugin's `machineid`); the rest tells the partitions and guests apart;
 * 2. the root is `/sys` of a machine without /proc/sysinfo (not s390): `/etc/machine-id`;
 * 3. any other root (a mount of another machine's sysfs, the emulator's FUSE view): `sysfs-` and 16 hex
 *    digits of a hash of this machine's host name and the root's real path.
 *
 * bootId, which changes at every boot: the configured boot-id file; else, for `/sys`, the kernel's
 * `/proc/sys/kernel/random/boot_id`; else (a mount) a stable `static-<hash>`: a reboot behind a mount is
 * then not seen as a new boot but as drift (everything apmatrix set is gone), which the reconciler repairs
 * just the same.
 */
import { createHash } from 'node:crypto'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'

/** Options of {@link HostIdentity}. */
export interface HostIdentityOptions {
  /** The directory that plays /sys. */
  root: string
  /** A file holding the boot id (one line); overrides the default. */
  bootIdFile?: string
  /** Where /proc and /etc are (tests); default `/proc` and `/etc`. */
  procDir?: string
  etcDir?: string
}

/** Fields of `/proc/sysinfo` (s390): `Key:   value` lines. */
export function parseSysinfo(text: string): Map<string, string> {
  const out = new Map<string, string>()
  for (const line of text.split('\n')) {
    const m = /^([^:]+):\s*(.*?)\s*$/.exec(line)
    if (m && !out.has(m[1]!.trim())) out.set(m[1]!.trim(), m[2]!)
  }
  return out
}

/** The machine id from /proc/sysinfo fields, or undefined when they do not name a machine. */
export function machineIdFromSysinfo(f: Map<string, string>): string | undefined {
  const [manufacturer, type, sequence] = [f.get('Manufacturer'), f.get('Type'), f.get('Sequence Code')]
  if (!manufacturer || !type || !sequence) return undefined
  const clean = (v: string) => v.replace(/[^A-Za-z0-9._]+/g, '_')
  let id = `${clean(manufacturer)}-${clean(type)}-${clean(sequence)}`
  const lpar = f.get('LPAR Number')
  if (lpar) id += `-LPAR${clean(lpar)}`
  const vm = f.get('VM00 Name')
  if (vm) id += `-VM-${clean(vm)}`
  return id
}

async function readTrimmed(file: string): Promise<string | undefined> {
  try {
    const v = (await fs.readFile(file, 'utf8')).trim()
    return v === '' ? undefined : v
  } catch {
    return undefined
  }
}

/** The identity of the host behind one sysfs root. */
export class HostIdentity {
  private readonly local: boolean
  private machine: Promise<string> | undefined
  private readonly procDir: string
  private readonly etcDir: string

  constructor(private readonly o: HostIdentityOptions) {
    this.local = path.resolve(o.root) === '/sys'
    this.procDir = o.procDir ?? '/proc'
    this.etcDir = o.etcDir ?? '/etc'
  }

  /** Stable per machine (see the file comment); read once. */
  machineId(): Promise<string> {
    this.machine ??= (async () => {
      if (this.local) {
        const sysinfo = await readTrimmed(path.join(this.procDir, 'sysinfo'))
        const fromSysinfo = sysinfo === undefined ? undefined : machineIdFromSysinfo(parseSysinfo(sysinfo))
        if (fromSysinfo) return fromSysinfo
        const etc = await readTrimmed(path.join(this.etcDir, 'machine-id'))
        if (etc) return etc
      }
      return `sysfs-${await this.rootHash()}`
    })()
    return this.machine
  }

  /** The current boot (read at every call: it is what tells a reboot). Throws when a configured boot-id file cannot be read. */
  async bootId(): Promise<string> {
    if (this.o.bootIdFile) {
      const v = await readTrimmed(this.o.bootIdFile)
      if (v === undefined) throw new Error(`boot id file ${this.o.bootIdFile} cannot be read or is empty`)
      return v
    }
    if (this.local) {
      const v = await readTrimmed(path.join(this.procDir, 'sys/kernel/random/boot_id'))
      if (v) return v
    }
    return `static-${await this.rootHash()}`
  }

  /** The kernel release of this machine for `/sys`; '' for a mount (unknown). */
  async kernel(): Promise<string> {
    return this.local ? ((await readTrimmed(path.join(this.procDir, 'sys/kernel/osrelease'))) ?? os.release()) : ''
  }

  private async rootHash(): Promise<string> {
    const real = await fs.realpath(this.o.root).catch(() => path.resolve(this.o.root))
    return createHash('sha256').update(`${os.hostname()}:${real}`).digest('hex').slice(0, 16)
  }
}
