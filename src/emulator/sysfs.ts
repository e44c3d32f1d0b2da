import { SysfsError } from '../domain/errors.js'
import { clip } from '../domain/text.js'
import { kstrtoul, parseApqnName } from '../domain/ids.js'
import type { SysfsStat } from './api.js'
import type { ApBus } from './bus.js'
import type { KernelContext } from './context.js'
import { modeOf } from './machine.js'
import { kstrtobool, scanInt } from './parse.js'
import { ApCard, type ApQueue, type DriverName } from './queue.js'
import { MAX_MDEVS, type Mdev, type VfioAp, matrixText } from './vfio-ap.js'

/** A node of the emulated sysfs tree. */
export type SysNode = DirNode | AttrNode | LinkNode
interface DirNode {
  t: 'dir'
  entries(): string[]
  child(name: string): SysNode | undefined
}
interface AttrNode {
  t: 'attr'
  read?: () => string
  write?: (v: string) => void
}
interface LinkNode {
  t: 'link'
  /**
   * Relative target as the kernel shows it. Lookups resolve it against the link's own directory, the way
   * the VFS does, so a wrong target breaks the emulator's own paths too (and not only a FUSE mount).
   */
  target: string
}

type AttrTable = Record<string, AttrNode | undefined>

function ro(read: () => string): AttrNode {
  return { t: 'attr', read }
}
function wo(write: (v: string) => void): AttrNode {
  return { t: 'attr', write }
}
function rw(read: () => string, write: (v: string) => void): AttrNode {
  return { t: 'attr', read, write }
}
function link(target: string): LinkNode {
  return { t: 'link', target }
}

/** A directory made of attributes plus named sub-nodes (both computed on access). */
function dir(attrs: () => AttrTable, subs: () => Record<string, SysNode | undefined> = () => ({})): DirNode {
  const all = (): Record<string, SysNode> => {
    const out: Record<string, SysNode> = {}
    for (const [k, v] of Object.entries(attrs())) if (v) out[k] = v
    for (const [k, v] of Object.entries(subs())) if (v) out[k] = v
    return out
  }
  return {
    t: 'dir',
    entries: () => Object.keys(all()).sort(),
    // Hot path (every read and write): look the name up without merging and sorting the whole table.
    child: (name) => {
      const s = subs()
      if (Object.hasOwn(s, name) && s[name]) return s[name] // as in all(): a sub-node wins over an attribute
      const a = attrs()
      return Object.hasOwn(a, name) ? (a[name] ?? undefined) : undefined
    },
  }
}

/** A directory of fixed sub-directories, each built only when it is looked up (null: absent). */
function branches(table: Record<string, (() => SysNode) | null>): DirNode {
  return {
    t: 'dir',
    entries: () =>
      Object.keys(table)
        .filter((k) => table[k])
        .sort(),
    child: (name) => (Object.hasOwn(table, name) ? (table[name]?.() ?? undefined) : undefined),
  }
}

/** A directory whose children are looked up by name without building the whole table (big device lists). */
function lazyDir(entries: () => string[], child: (name: string) => SysNode | undefined): DirNode {
  return { t: 'dir', entries: () => entries().sort(), child }
}

/** The names of a path, without empty ones and `.` (`..` is kept: it depends on where the walk is). */
function segments(path: string): string[] {
  return path.split('/').filter((s) => s !== '' && s !== '.')
}

/** `%d` (sscanf) 0/1 used by card config and the online attributes (B-40..B-42). */
function parse01(v: string): boolean {
  const n = scanInt(v, false)
  if (n !== 0 && n !== 1) throw new SysfsError('EINVAL', `'${clip(v, 64)}' is not 0 or 1`)
  return n === 1
}

const LAST_ERR_NAMES: Record<number, string> = {
  0x00: 'NORMAL',
  0x01: 'Q_NOT_AVAIL',
  0x02: 'RESET_IN_PROGRESS',
  0x03: 'DECONFIGURED',
  0x04: 'CHECKSTOPPED',
  0x05: 'BUSY',
  0x06: 'INVALID_ADDRESS',
  0x07: 'OTHERWISE_CHANGED',
  0x08: 'INVALID_GISA',
  0x10: 'Q_FULL',
  0x11: 'INDEX_TOO_BIG',
  0x13: 'NO_FIRST_PART',
  0x15: 'MESSAGE_TOO_BIG',
}

/** O-7: zcrypt's type string `CEXnC` / `CEXnA` / `CEXnP`. */
function zcryptType(c: ApCard): string {
  const m = modeOf(c.functions)
  return `CEX${c.hwtype - 6}${m === 'accel' ? 'A' : m === 'ep11' ? 'P' : 'C'}`
}

const hex2 = (n: number): string => n.toString(16).toUpperCase().padStart(2, '0')

/**
 * Path routing and attribute formats of the emulated sysfs (docs/kernel-model.md B-34, O-9, O-12, O-13, V-3, V-5,
 * V-18, V-19, V-22, V-31). Both `/sys/bus/ap/devices/X/...` (through the link) and the real
 * `/sys/devices/ap/cardXX/XX.YYYY/...` work.
 */
export class Sysfs {
  constructor(
    private readonly ctx: KernelContext,
    private readonly bus: ApBus,
    private readonly vfio: VfioAp | null,
  ) {
    this.rootDir = this.buildRoot()
  }

  // ---- public operations ----

  read(path: string): string {
    const target = this.resolve(path, true)
    if (target.t === 'dir') throw new SysfsError('EISDIR', `${path}: is a directory`)
    if (target.t === 'link' || !target.read) throw new SysfsError('EACCES', `${path}: not readable`)
    return target.read()
  }

  write(path: string, value: string): void {
    const target = this.resolve(path, true)
    if (target.t === 'dir') throw new SysfsError('EISDIR', `${path}: is a directory`)
    if (target.t === 'link' || !target.write) throw new SysfsError('EACCES', `${path}: not writable`)
    target.write(value)
  }

  list(path: string): string[] {
    const target = this.resolve(path, true)
    if (target.t !== 'dir') throw new SysfsError('ENOTDIR', `${path}: not a directory`)
    return target.entries()
  }

  exists(path: string): boolean {
    try {
      this.resolve(path, false)
      return true
    } catch {
      return false
    }
  }

  readlink(path: string): string {
    const n = this.resolve(path, false)
    if (n.t !== 'link') throw new SysfsError('EINVAL', `${path}: not a symbolic link`)
    return n.target
  }

  /** What the node at `path` is, without following a final link (lstat). ENOENT, ENOTDIR, ELOOP. */
  stat(path: string): SysfsStat {
    const n = this.resolve(path, false)
    if (n.t === 'dir') return { type: 'dir' }
    if (n.t === 'link') return { type: 'link', target: n.target }
    return { type: 'attr', readable: n.read !== undefined, writable: n.write !== undefined }
  }

  /**
   * Walks an absolute path the way the VFS does: `.` and `..` act on the directories actually walked,
   * and a link met on the way (or at the end, with `followLast`) continues from its relative target
   * resolved against the link's own directory. Only `/sys` exists above the tree.
   * ENOENT, ENOTDIR, ELOOP (more than 40 links, as the kernel's limit).
   */
  private resolve(path: string, followLast: boolean): SysNode {
    if (!path.startsWith('/')) throw new SysfsError('ENOENT', `${path}: not an absolute path`)
    const dirs: DirNode[] = [this.top]
    // Segments still to walk, last one first (a link's target is pushed in front of the rest).
    const todo = segments(path).reverse()
    let links = 0
    let node: SysNode = this.top
    for (let seg = todo.pop(); seg !== undefined; seg = todo.pop()) {
      if (node.t !== 'dir') throw new SysfsError('ENOTDIR', `${path}: not a directory`)
      if (seg === '..') {
        if (dirs.length > 1) dirs.pop()
        node = dirs[dirs.length - 1]!
        continue
      }
      const c = node.child(seg)
      if (!c) throw new SysfsError('ENOENT', `${path}: no such file or directory`)
      if (c.t === 'link' && (todo.length > 0 || followLast)) {
        if (++links > 40) throw new SysfsError('ELOOP', `${path}: too many levels of symbolic links`)
        const target = segments(c.target)
        for (let i = target.length - 1; i >= 0; i--) todo.push(target[i]!)
        continue
      }
      if (c.t === 'dir') dirs.push(c)
      node = c
    }
    return node
  }

  /** The directory above `/sys`: only `sys` is in it. */
  private readonly top: DirNode = { t: 'dir', entries: () => ['sys'], child: (name) => (name === 'sys' ? this.root() : undefined) }

  // ---- the tree ----

  /**
   * `/sys`. The mdev core's parts (`bus/mdev`, `class/mdev_bus`) and vfio_ap's (`bus/matrix`,
   * `devices/vfio_ap`) exist only while vfio_ap is loaded: the mdev core registers its compatibility class
   * with the first mdev parent, and vfio_ap is the only parent an s390 LPAR has.
   */
  private root(): DirNode {
    return this.rootDir
  }

  /** Built once: which of its branches exist depends only on whether vfio_ap is loaded. */
  private readonly rootDir: DirNode

  private buildRoot(): DirNode {
    const v = this.vfio
    const bus = branches({ ap: () => this.busDir(), matrix: v && (() => this.matrixBusDir()), mdev: v && (() => this.mdevBusDir(v)) })
    const cls = branches({ mdev_bus: v && (() => this.mdevBusClassDir()) })
    const devices = branches({ ap: () => this.apRootDir(), vfio_ap: v && (() => this.vfioRootDir(v)) })
    return branches({ bus: () => bus, class: () => cls, devices: () => devices })
  }

  private deviceLinkTarget(dev: ApCard | ApQueue, up: number): string {
    return `${'../'.repeat(up)}devices/ap/${dev instanceof ApCard ? dev.name : `${dev.card.name}/${dev.name}`}`
  }

  private busDir(): DirNode {
    const b = this.bus
    const m = this.ctx.machine
    const qciMask = (k: 'apm' | 'aqm' | 'adm') => () => (m.qci ? `${m[k].toString()}\n` : 'not supported\n')
    return dir(
      () => ({
        ap_domain: rw(
          () => `${b.defaultDomain}\n`,
          (v) => {
            const n = scanInt(v, true)
            if (n === undefined) throw new SysfsError('EINVAL', 'ap_domain: not an integer')
            b.setDefaultDomain(n)
          },
        ),
        ap_control_domain_mask: ro(qciMask('adm')),
        ap_usage_domain_mask: ro(qciMask('aqm')),
        ap_adapter_mask: ro(qciMask('apm')),
        ap_max_adapter_id: ro(() => `${m.maxAdapterId()}\n`),
        ap_max_domain_id: ro(() => `${m.maxDomainId()}\n`),
        ap_interrupts: ro(() => '1\n'),
        config_time: rw(
          () => `${b.configTime}\n`,
          (v) => {
            const n = scanInt(v, false)
            if (n === undefined) throw new SysfsError('EINVAL', 'config_time: not an integer')
            b.setConfigTime(n)
          },
        ),
        poll_thread: rw(
          () => `${b.pollThread ? 1 : 0}\n`,
          (v) => {
            const on = kstrtobool(v)
            if (on === undefined) throw new SysfsError('EINVAL', 'poll_thread: not a boolean')
            b.pollThread = on
          },
        ),
        poll_timeout: rw(
          () => `${b.pollTimeout}\n`,
          (v) => {
            const r = kstrtoul(v)
            if (!r.ok) throw new SysfsError(r.errno, 'poll_timeout: not an unsigned integer')
            if (r.value > 120_000_000_000n) throw new SysfsError('EINVAL', 'poll_timeout: above 120 s')
            b.pollTimeout = Number(r.value)
          },
        ),
        apmask: rw(
          () => `${b.apmask.toString()}\n`,
          (v) => b.writeMask('ap', v),
        ),
        aqmask: rw(
          () => `${b.aqmask.toString()}\n`,
          (v) => b.writeMask('aq', v),
        ),
        scans: rw(
          () => `${b.scans}\n`,
          () => b.scan(),
        ),
        bindings: ro(() => b.bindingsText()),
        features: ro(() => {
          const q = m.qci
          if (!q) return '-\n'
          const f = [q.apsc && 'APSC', q.apxa && 'APXA', q.qact && 'QACT', q.rc8a && 'RC8A', q.apsb && 'APSB'].filter(Boolean)
          // B-34 [SUBTLE]: QCI without any of these bits reads empty.
          return f.length ? `${f.join(' ')}\n` : ''
        }),
        uevent: wo(() => undefined),
      }),
      () => ({
        devices: lazyDir(
          () => [...[...b.cards.values()].map((c) => c.name), ...[...b.queues.values()].map((q) => q.name)],
          (name) => {
            const dev = b.device(name)
            return dev ? link(this.deviceLinkTarget(dev, 3)) : undefined
          },
        ),
        drivers: dir(
          () => ({}),
          () => ({
            cex4card: this.driverDir('cex4card'),
            cex4queue: this.driverDir('cex4queue'),
            vfio_ap: this.vfio ? this.driverDir('vfio_ap') : undefined,
          }),
        ),
      }),
    )
  }

  private driverDir(drv: DriverName): DirNode {
    const b = this.bus
    const bound = (): (ApCard | ApQueue)[] =>
      drv === 'cex4card' ? [...b.cards.values()].filter((c) => c.driver === drv) : [...b.queues.values()].filter((q) => q.driver === drv)
    return lazyDir(
      () => ['bind', 'unbind', 'uevent', ...bound().map((d) => d.name)],
      (name) => {
        if (name === 'bind') return wo((v) => b.bind(drv, v))
        if (name === 'unbind') return wo((v) => b.unbind(drv, v))
        if (name === 'uevent') return wo(() => undefined)
        const dev = b.device(name)
        return dev && dev.driver === drv ? link(this.deviceLinkTarget(dev, 4)) : undefined
      },
    )
  }

  private apRootDir(): DirNode {
    const b = this.bus
    return lazyDir(
      () => ['uevent', ...[...b.cards.values()].map((c) => c.name)],
      (name) => {
        if (name === 'uevent')
          return rw(
            () => '',
            () => undefined,
          )
        const dev = b.device(name)
        return dev instanceof ApCard ? this.cardDir(dev) : undefined
      },
    )
  }

  private ueventAttr(devpath: string, lines: () => Record<string, string>): AttrNode {
    return rw(
      () =>
        Object.entries(lines())
          .map(([k, v]) => `${k}=${v}\n`)
          .join(''),
      (v) => {
        const action = v.trim().split(/\s+/)[0] ?? 'change'
        if (!['add', 'remove', 'change', 'bind', 'unbind'].includes(action)) throw new SysfsError('EINVAL', 'uevent: unknown action')
        this.ctx.events.emit({ kind: 'uevent', action: action as 'change', devpath, env: lines() })
      },
    )
  }

  private cardDir(c: ApCard): DirNode {
    // Queue children are looked up directly (and the card's own table only when needed), so a path
    // through a 256-queue card does not build them all.
    return {
      t: 'dir',
      entries: () => this.cardDirFull(c).entries(),
      child: (name) => {
        const a = parseApqnName(name)
        if (a) {
          const q = a.apid === c.apid ? c.queues.get(a.apqi) : undefined
          return q ? this.queueDir(q) : undefined
        }
        return this.cardDirFull(c).child(name)
      },
    }
  }

  private cardDirFull(c: ApCard): DirNode {
    const b = this.bus
    const zc = () => c.driver === 'cex4card'
    const mode = modeOf(c.functions)
    return dir(
      () => ({
        hwtype: ro(() => `${c.hwtype}\n`),
        raw_hwtype: ro(() => `${c.rawType}\n`),
        depth: ro(() => `${c.depth}\n`),
        ap_functions: ro(() => `0x${(c.functions >>> 0).toString(16).toUpperCase().padStart(8, '0')}\n`),
        modalias: ro(() => `ap:t${hex2(c.hwtype)}\n`),
        max_msg_size: ro(() => '12288\n'),
        request_count: rw(
          () => `${c.requestCount}\n`,
          () => {
            c.requestCount = 0
            for (const q of c.queues.values()) q.requestCount = 0
          },
        ),
        requestq_count: ro(() => `${[...c.queues.values()].reduce((s, q) => s + q.waiting, 0)}\n`),
        pendingq_count: ro(() => `${[...c.queues.values()].reduce((s, q) => s + q.pending.length, 0)}\n`),
        config: rw(
          () => `${c.config ? 1 : 0}\n`,
          (v) => b.writeCardConfig(c, parse01(v)),
        ),
        chkstop: ro(() => `${c.chkstop ? 1 : 0}\n`),
        uevent: this.ueventAttr(c.devpath, () => {
          const env: Record<string, string> = {}
          if (c.driver) env.DRIVER = c.driver
          env.DEV_TYPE = c.hwtype.toString(16).toUpperCase().padStart(4, '0')
          env.MODALIAS = `ap:t${hex2(c.hwtype)}`
          if (mode) env.MODE = mode
          return env
        }),
        // O-9: zcrypt attributes exist only while cex4card is bound.
        online: zc()
          ? rw(
              () => `${c.config && !c.chkstop && c.online ? 1 : 0}\n`,
              (v) => b.writeCardOnline(c, parse01(v)),
            )
          : undefined,
        type: zc() ? ro(() => `${zcryptType(c)}\n`) : undefined,
        load: zc() ? ro(() => '0\n') : undefined,
      }),
      () => {
        const subs: Record<string, SysNode | undefined> = {}
        if (c.driver) subs.driver = link(`../../../bus/ap/drivers/${c.driver}`)
        subs.subsystem = link('../../../bus/ap')
        for (const q of c.queues.values()) subs[q.name] = this.queueDir(q)
        return subs
      },
    )
  }

  private queueDir(q: ApQueue): DirNode {
    const b = this.bus
    const kb = this.ctx.kb
    const mode = modeOf(q.card.functions)
    return dir(
      () => ({
        request_count: rw(
          () => (q.devState === 'UNINITIATED' ? '-\n' : `${q.requestCount}\n`),
          () => {
            q.requestCount = 0
          },
        ),
        requestq_count: ro(() => `${q.waiting}\n`),
        pendingq_count: ro(() => `${q.pending.length}\n`),
        reset: rw(
          () => (q.resetInProgress() ? 'Reset in progress.\n' : q.sm === 'WORKING' || q.sm === 'QUEUE_FULL' ? 'Reset Timer armed.\n' : 'No Reset Timer set.\n'),
          () => b.writeQueueReset(q),
        ),
        interrupt: ro(() => (q.irq === 'pending' ? 'Enable Interrupt pending.\n' : q.irq === 'enabled' ? 'Interrupts enabled.\n' : 'Interrupts disabled.\n')),
        config: ro(() => `${q.config ? 1 : 0}\n`),
        chkstop: ro(() => `${q.chkstop ? 1 : 0}\n`),
        ap_functions: ro(() => {
          const t = this.ctx.machine.tapq(q.apid, q.apqi)
          if (t.rc > 0x05) throw new SysfsError('EIO', 'TAPQ failed')
          return `0x${((t.info?.functions ?? q.card.functions) >>> 0).toString(16).toUpperCase().padStart(8, '0')}\n`
        }),
        // O-13: debug-build attributes, emulated as a debug kernel would show them.
        states: ro(() => (q.devState === 'OPERATING' ? `OPERATING [${q.sm}]\n` : `${q.devState}\n`)),
        last_err_rc: ro(() => `${LAST_ERR_NAMES[q.lastErrRc] ?? `response code ${q.lastErrRc}`}\n`),
        uevent: this.ueventAttr(q.devpath, () => {
          const env: Record<string, string> = {}
          if (q.driver) env.DRIVER = q.driver
          if (mode) env.MODE = mode
          return env
        }),
        online:
          q.driver === 'cex4queue'
            ? rw(
                () => `${q.config && !q.chkstop && q.online ? 1 : 0}\n`,
                (v) => b.writeQueueOnline(q, parse01(v)),
              )
            : undefined,
        load: q.driver === 'cex4queue' ? ro(() => '0\n') : undefined,
        // V-31: status exists only while bound to vfio_ap.
        status: q.driver === 'vfio_ap' && this.vfio ? ro(() => this.vfio!.status(q)) : undefined,
        driver_override: kb.driverOverride
          ? rw(
              () => `${q.driverOverride}\n`,
              (v) => b.writeDriverOverride(q, v),
            )
          : undefined,
      }),
      () => ({
        driver: q.driver ? link(`../../../../bus/ap/drivers/${q.driver}`) : undefined,
        subsystem: link('../../../../bus/ap'),
      }),
    )
  }

  /**
   * `/sys/devices/vfio_ap` (V-1): the root device and the matrix device with its mdev type (V-3) and its
   * mdevs (V-5). The links point where the kernel's do, into the trees of {@link matrixBusDir} and
   * {@link mdevBusDir}.
   */
  private vfioRootDir(v: VfioAp): DirNode {
    const kb = this.ctx.kb
    const typeDir = dir(
      () => ({
        name: ro(() => 'VFIO AP Passthrough Device\n'),
        device_api: ro(() => 'vfio-ap\n'),
        available_instances: ro(() => `${MAX_MDEVS - v.mdevs.size}\n`),
        create: wo((val) => void v.create(val)),
      }),
      () => ({
        // devices/<uuid> -> /sys/devices/vfio_ap/matrix/<uuid>
        devices: lazyDir(
          () => [...v.mdevs.keys()],
          (name) => (v.mdevs.has(name) ? link(`../../../${name}`) : undefined),
        ),
      }),
    )
    const matrix = lazyDir(
      () => [...(kb.matrixFeatures !== undefined ? ['features'] : []), 'mdev_supported_types', 'uevent', 'driver', 'subsystem', ...v.mdevs.keys()],
      (name) => {
        if (name === 'features') return kb.matrixFeatures !== undefined ? ro(() => `${kb.matrixFeatures}\n`) : undefined
        if (name === 'mdev_supported_types')
          return dir(
            () => ({}),
            () => ({ 'vfio_ap-passthrough': typeDir }),
          )
        if (name === 'uevent')
          return rw(
            () => 'DRIVER=vfio_ap\n',
            () => undefined,
          )
        if (name === 'driver') return link('../../../bus/matrix/drivers/vfio_ap')
        if (name === 'subsystem') return link('../../../bus/matrix')
        const m = v.mdevs.get(name)
        return m ? this.mdevDir(v, m) : undefined
      },
    )
    return dir(
      () => ({
        uevent: rw(
          () => '',
          () => undefined,
        ),
      }),
      () => ({ matrix }),
    )
  }

  /**
   * V-1: vfio_ap's private bus `matrix`, whose only device is the matrix device, bound to the private
   * driver `vfio_ap` (no bind/unbind files: the driver suppresses them).
   */
  private matrixBusDir(): DirNode {
    return dir(
      () => ({ uevent: wo(() => undefined) }),
      () => ({
        devices: dir(
          () => ({}),
          () => ({ matrix: link('../../../devices/vfio_ap/matrix') }),
        ),
        drivers: dir(
          () => ({}),
          () => ({
            vfio_ap: dir(
              () => ({ uevent: wo(() => undefined) }),
              () => ({ matrix: link('../../../../devices/vfio_ap/matrix') }),
            ),
          }),
        ),
      }),
    )
  }

  /**
   * The mdev core's bus (what mdevctl reads: `bus/mdev/devices/<uuid>`): every mdev, bound to vfio_ap's
   * mdev driver `vfio_ap_mdev`. Driver-core bind/unbind of mdevs is not modelled.
   */
  private mdevBusDir(v: VfioAp): DirNode {
    return dir(
      () => ({ uevent: wo(() => undefined) }),
      () => ({
        devices: lazyDir(
          () => [...v.mdevs.keys()],
          (name) => (v.mdevs.has(name) ? link(`../../../devices/vfio_ap/matrix/${name}`) : undefined),
        ),
        drivers: dir(
          () => ({}),
          () => ({
            vfio_ap_mdev: lazyDir(
              () => ['uevent', ...v.mdevs.keys()],
              (name) => (name === 'uevent' ? wo(() => undefined) : v.mdevs.has(name) ? link(`../../../../devices/vfio_ap/matrix/${name}`) : undefined),
            ),
          }),
        ),
      }),
    )
  }

  /** The mdev core's compatibility class: one link per registered mdev parent (mdevctl's list of parents). */
  private mdevBusClassDir(): DirNode {
    return dir(
      () => ({}),
      () => ({ matrix: link('../../devices/vfio_ap/matrix') }),
    )
  }

  private mdevDir(v: VfioAp, m: Mdev): DirNode {
    const kb = this.ctx.kb
    // Writes go to the live mdev; a removed one answers ENODEV (V-29) if a stale node is still held.
    const live = (f: (val: string) => void) => (val: string) => {
      if (v.mdevs.get(m.uuid) !== m) throw new SysfsError('ENODEV', `mdev ${m.uuid} is gone`)
      f(val)
    }
    return dir(
      () => ({
        assign_adapter: wo(live((val) => v.assignAdapter(m, val))),
        unassign_adapter: wo(live((val) => v.unassignAdapter(m, val))),
        assign_domain: wo(live((val) => v.assignDomain(m, val))),
        unassign_domain: wo(live((val) => v.unassignDomain(m, val))),
        assign_control_domain: wo(live((val) => v.assignControlDomain(m, val))),
        unassign_control_domain: wo(live((val) => v.unassignControlDomain(m, val))),
        matrix: ro(() => matrixText(m.apm, m.aqm)),
        guest_matrix: kb.guestMatrix ? ro(() => v.guestMatrixText(m)) : undefined,
        control_domains: ro(() => v.controlDomainsText(m)),
        ap_config: kb.apConfig
          ? rw(
              () => v.apConfigText(m),
              live((val) => v.writeApConfig(m, val)),
            )
          : undefined,
        remove: wo(live((val) => v.remove(m, val))),
        uevent: rw(
          () => 'MDEV_TYPE=vfio_ap-passthrough\n',
          () => undefined,
        ),
      }),
      () => ({
        mdev_type: link('../mdev_supported_types/vfio_ap-passthrough'),
        driver: link('../../../../bus/mdev/drivers/vfio_ap_mdev'),
        subsystem: link('../../../../bus/mdev'),
      }),
    )
  }
}
