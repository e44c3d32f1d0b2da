/**
 * Fault injection for the emulator's sysfs writes (docs/emulator-sysfs.md "Fault injection"): rules that
 * make a share of the writes to some paths fail with EIO or EBUSY, or answer late. A test uses them to
 * play a flaky or slow host; the kernel model itself is untouched (a failed write changes nothing).
 *
 * A rule names its paths by prefix (`/sys/devices/vfio_ap/matrix`: that node and everything under it)
 * or, when the text holds a glob character (`*`, `?`, `[`, `{`), by glob over the whole path
 * (`/sys/devices/vfio_ap/matrix/*\/assign_*`; `*` stays within one path segment, `**` crosses them).
 * Every write is checked against every rule in order; a matching rule draws from one seeded generator
 * and hits with its `rate` (0..1). Delays of the rules that hit add up and come first; then the first
 * failing rule that hit fails the write. The same seed and the same sequence of writes give the same
 * faults, so a failing run can be repeated.
 *
 * Faults belong to the emulator process, not to a boot: they stay across a Reboot until cleared.
 */
import picomatch from 'picomatch'
import { ApmatrixError, SysfsError } from '../domain/errors.js'

/** What a rule does to a write it hits. */
export type FaultKind = 'eio' | 'ebusy' | 'delay'
export const FAULT_KINDS: readonly FaultKind[] = ['eio', 'ebusy', 'delay']

/** One rule as given. */
export interface FaultRule {
  /** A sysfs path prefix (`/sys/...`) or a glob over the whole path. */
  path: string
  /** Probability 0..1 that a matching write is hit. */
  rate: number
  kind: FaultKind
  /** For `delay`: wall milliseconds the write waits before it is made (1..60000). */
  delayMs?: number
}

/** A whole configuration: replaces the previous one. No rules = no faults. */
export interface FaultConfig {
  rules: FaultRule[]
  /** Seed of the generator (an unsigned 32-bit integer); a random one when absent (reported by {@link FaultInjector.status}). */
  seed?: number
}

/** The configuration in force, with counts since it was set. */
export interface FaultStatus {
  rules: Array<FaultRule & { matched: number; injected: number }>
  seed: number
  /** Writes checked against the rules (every write while rules are set). */
  writes: number
  /** Writes that were failed (EIO/EBUSY) by a rule. */
  failed: number
  /** Writes that were delayed by a rule. */
  delayed: number
}

/** What happens to one write: wait `delayMs`, then fail with `errno` (or go through when null). */
/**
 * A fault status in the protobuf field names both gRPC faces use (the emulator's own `Faults` and the service's
 * `EmulatorService` `Faults`): uint64 counts as decimal strings, the proto loader's long form.
 */
export function faultStatusMessage(s: FaultStatus) {
  return {
    rules: s.rules.map((r) => ({
      path: r.path,
      rate: r.rate,
      kind: r.kind,
      delay_ms: r.delayMs ?? 0,
      matched: String(r.matched),
      injected: String(r.injected),
    })),
    seed: s.seed,
    writes: String(s.writes),
    failed: String(s.failed),
    delayed: String(s.delayed),
  }
}

export interface WriteFault {
  delayMs: number
  errno: 'EIO' | 'EBUSY' | null
  /** The message the failure carries (names the rule). */
  message: string
}

export const MAX_FAULT_RULES = 32
export const MAX_FAULT_PATH = 512
export const MAX_FAULT_DELAY_MS = 60_000

function bad(msg: string): never {
  throw new ApmatrixError('INVALID_ARGUMENT', msg)
}

const GLOB_CHARS = /[*?[\]{}]/

/**
 * Checks a configuration from any caller (REST body, gRPC message, CLI) and returns it normalised.
 * Throws ApmatrixError INVALID_ARGUMENT naming the field.
 */
export function validateFaultConfig(input: unknown): FaultConfig {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) bad('faults: expected an object {rules, seed}')
  const o = input as Record<string, unknown>
  for (const k of Object.keys(o)) if (k !== 'rules' && k !== 'seed') bad(`faults: unknown field '${k}'`)
  if (!Array.isArray(o.rules)) bad('rules: expected a list')
  if (o.rules.length > MAX_FAULT_RULES) bad(`rules: at most ${MAX_FAULT_RULES}, got ${o.rules.length}`)
  const rules = o.rules.map((r, i) => validateRule(r, `rules[${i}]`))
  let seed: number | undefined
  if (o.seed !== undefined && o.seed !== null) {
    if (typeof o.seed !== 'number' || !Number.isInteger(o.seed) || o.seed < 0 || o.seed > 0xffff_ffff)
      bad(`seed: expected an integer 0..4294967295, got ${JSON.stringify(o.seed)}`)
    seed = o.seed
  }
  return { rules, ...(seed !== undefined ? { seed } : {}) }
}

function validateRule(r: unknown, at: string): FaultRule {
  if (typeof r !== 'object' || r === null || Array.isArray(r)) bad(`${at}: expected an object {path, rate, kind, delayMs}`)
  const o = r as Record<string, unknown>
  for (const k of Object.keys(o)) if (!['path', 'rate', 'kind', 'delayMs'].includes(k)) bad(`${at}: unknown field '${k}'`)
  const { path, rate, kind, delayMs } = o
  if (typeof path !== 'string' || path.length === 0 || path.length > MAX_FAULT_PATH) bad(`${at}.path: expected 1..${MAX_FAULT_PATH} characters`)
  if (!path.startsWith('/sys/') && path !== '/sys') bad(`${at}.path: must start with /sys/, got ${JSON.stringify(path.slice(0, 64))}`)
  if (path.includes('\0')) bad(`${at}.path: NUL is not allowed`)
  if (GLOB_CHARS.test(path)) {
    try {
      picomatch.makeRe(path, { strictBrackets: true })
    } catch (e) {
      bad(`${at}.path: not a valid glob (${(e as Error).message})`)
    }
  }
  if (typeof rate !== 'number' || !Number.isFinite(rate) || rate < 0 || rate > 1) bad(`${at}.rate: expected a number 0..1, got ${JSON.stringify(rate)}`)
  if (typeof kind !== 'string' || !(FAULT_KINDS as readonly string[]).includes(kind))
    bad(`${at}.kind: expected one of ${FAULT_KINDS.join(', ')}, got ${JSON.stringify(kind)}`)
  if (kind === 'delay') {
    if (typeof delayMs !== 'number' || !Number.isInteger(delayMs) || delayMs < 1 || delayMs > MAX_FAULT_DELAY_MS)
      bad(`${at}.delayMs: a delay rule needs an integer 1..${MAX_FAULT_DELAY_MS}, got ${JSON.stringify(delayMs)}`)
    return { path, rate, kind, delayMs }
  }
  if (delayMs !== undefined && delayMs !== null && delayMs !== 0) bad(`${at}.delayMs: only a delay rule has one`)
  return { path, rate, kind: kind as FaultKind }
}

/** mulberry32: a small seeded generator of uniform numbers in [0, 1); plenty for "hit with probability p". */
function generator(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

function matcher(path: string): (p: string) => boolean {
  if (GLOB_CHARS.test(path)) {
    const isMatch = picomatch(path, { dot: true, strictBrackets: true })
    return (p) => isMatch(p)
  }
  const base = path.endsWith('/') ? path.slice(0, -1) : path
  return (p) => p === base || p.startsWith(`${base}/`)
}

interface LiveRule {
  rule: FaultRule
  matches: (p: string) => boolean
  matched: number
  injected: number
}

/** The fault rules of one emulator process. */
export class FaultInjector {
  private rules: LiveRule[] = []
  private seed = 0
  private random: () => number = () => 1
  private writes = 0
  private failed = 0
  private delayed = 0

  /** Replaces the configuration (validated first: INVALID_ARGUMENT leaves the old one in force) and resets the counts. */
  set(input: unknown): FaultStatus {
    const cfg = validateFaultConfig(input)
    this.seed = cfg.seed ?? Math.floor(Math.random() * 0x1_0000_0000)
    this.random = generator(this.seed)
    this.rules = cfg.rules.map((rule) => ({ rule, matches: matcher(rule.path), matched: 0, injected: 0 }))
    this.writes = this.failed = this.delayed = 0
    return this.status()
  }

  /** No faults from now on (counts reset). */
  clear(): FaultStatus {
    return this.set({ rules: [] })
  }

  get active(): boolean {
    return this.rules.length > 0
  }

  status(): FaultStatus {
    return {
      rules: this.rules.map((r) => ({ ...r.rule, matched: r.matched, injected: r.injected })),
      seed: this.seed,
      writes: this.writes,
      failed: this.failed,
      delayed: this.delayed,
    }
  }

  /** Decides what happens to a write of `path` (counted); undefined when nothing does. */
  decide(written: string): WriteFault | undefined {
    if (this.rules.length === 0) return undefined
    this.writes++
    // As written, without empty and `.` segments (`/sys//bus/./ap` is `/sys/bus/ap`); links are not followed.
    const path = `/${written
      .split('/')
      .filter((x) => x !== '' && x !== '.')
      .join('/')}`
    let delayMs = 0
    let fail: { errno: 'EIO' | 'EBUSY'; rule: number } | undefined
    this.rules.forEach((r, i) => {
      if (!r.matches(path)) return
      r.matched++
      // One draw per matching rule, hit or not: the sequence depends only on the seed and the writes.
      if (this.random() >= r.rule.rate) return
      if (r.rule.kind === 'delay') {
        r.injected++
        delayMs += r.rule.delayMs ?? 0
      } else if (!fail) {
        r.injected++
        fail = { errno: r.rule.kind === 'eio' ? 'EIO' : 'EBUSY', rule: i }
      }
    })
    if (!fail && delayMs === 0) return undefined
    if (delayMs > 0) this.delayed++
    if (fail) this.failed++
    return {
      delayMs: Math.min(delayMs, MAX_FAULT_DELAY_MS),
      errno: fail?.errno ?? null,
      message: fail ? `injected fault (rule ${fail.rule}): ${path}` : '',
    }
  }
}

/** Throws the SysfsError of a failing fault (call it where the write would be made). */
export function throwIfFailed(f: WriteFault | undefined): void {
  if (f?.errno) throw new SysfsError(f.errno, f.message)
}

/** A promise that resolves after the fault's delay (at once without one). */
export function faultDelay(f: WriteFault | undefined): Promise<void> {
  if (!f || f.delayMs <= 0) return Promise.resolve()
  return new Promise((resolve) => setTimeout(resolve, f.delayMs))
}

/**
 * Makes a write under the injector: waits the delay, then fails with the injected errno or runs `write`.
 * The decision is made at once (in arrival order), so the seeded sequence does not depend on timing.
 */
export async function writeWithFaults(faults: FaultInjector, path: string, write: () => void | Promise<void>): Promise<void> {
  const f = faults.decide(path)
  await faultDelay(f)
  throwIfFailed(f)
  await write()
}
