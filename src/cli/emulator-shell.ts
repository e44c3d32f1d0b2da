/**
 * The line protocol of `apmatrix emulator shell` (documented in src/cli/EMULATOR-SHELL.md): one input
 * line in, exactly one JSON line out. {@link handleShellLine} is the whole protocol as a pure function
 * of (session, line), so tests drive it without processes; {@link runShell} is the stdin/stdout loop.
 */
import type { Readable } from 'node:stream'
import { ApmatrixError, SysfsError, type Errno } from '../domain/errors.js'
import { formatApqn, parseApqn, parseId } from '../domain/ids.js'
import type { AdapterMode, EmulatedHostApi, HardwareAction } from '../emulator/api.js'
import { clip } from '../domain/text.js'

/** Longest accepted input line in bytes, without its newline. A longer line is answered with EINVAL. */
export const MAX_LINE_BYTES = 64 * 1024
/** PATH_MAX: longest accepted sysfs path. */
const MAX_PATH = 4096
/** Longest uuid or guest name the shell passes on (the host validates the content). */
const MAX_NAME = 256
/** Most requests one `requests` op may submit. */
const MAX_REQUESTS = 1_000_000
/**
 * Longest single `advance` (one virtual hour = 120 periodic scans at the default config_time): a bound
 * so one line cannot keep the shell busy for long (a scan of the `full` profile costs up to ~0.2 s).
 */
export const MAX_ADVANCE_MS = 3_600_000

/** A successful answer: `ok` plus the op's result fields. */
export type ShellOk = { ok: true } & Record<string, unknown>
/** A failed answer: the kernel errno name and a human-readable message. */
export interface ShellFail {
  ok: false
  errno: Errno
  message: string
}
/** One output line of the shell. */
export type ShellReply = ShellOk | ShellFail

/** The state one shell keeps besides the host: where the last `events` op stopped. */
export interface ShellSession {
  readonly host: EmulatedHostApi
  /** Highest event seq already returned by `events` (0: none yet, so the first call returns all kept events). */
  lastEventSeq: number
}

/** A session over `host`; its first `events` op returns every event the host still keeps (from boot). */
export function createShellSession(host: EmulatedHostApi): ShellSession {
  return { host, lastEventSeq: 0 }
}

/** The input line is not a command of the protocol: answered with EINVAL. */
class BadLine extends Error {}

const MODES: readonly AdapterMode[] = ['cca', 'ep11', 'accel']

/**
 * Answers one input line (without its newline; one trailing `\r` is ignored). Returns undefined for a
 * blank line or a `#` comment (no output), otherwise exactly one reply. Never throws: an unparsable
 * line is EINVAL, a {@link SysfsError} carries its errno, anything else is EIO.
 */
export function handleShellLine(session: ShellSession, rawLine: string): ShellReply | undefined {
  const line = rawLine.endsWith('\r') ? rawLine.slice(0, -1) : rawLine
  if (Buffer.byteLength(line, 'utf8') > MAX_LINE_BYTES) return fail('EINVAL', `line longer than ${MAX_LINE_BYTES} bytes`)
  const start = line.trimStart()
  if (start === '' || start.startsWith('#')) return undefined
  try {
    const op = start.startsWith('{') ? parseJsonCommand(start) : parsePlainCommand(start)
    return execute(session, op)
  } catch (e) {
    return toFailure(e)
  }
}

/** Maps an exception to the reply line (BadLine and invalid arguments: EINVAL; unknown: EIO). */
function toFailure(e: unknown): ShellFail {
  if (e instanceof BadLine) return fail('EINVAL', e.message)
  if (e instanceof SysfsError) return fail(e.errno, e.message)
  if (e instanceof ApmatrixError) {
    if (e.errno) return fail(e.errno, e.message)
    if (e.code === 'INVALID_ARGUMENT' || e.code === 'OUT_OF_RANGE') return fail('EINVAL', e.message)
  }
  return fail('EIO', e instanceof Error ? e.message : String(e))
}

function fail(errno: Errno, message: string): ShellFail {
  return { ok: false, errno, message }
}

/** A parsed command: exactly the host call it stands for. */
type Command =
  | { op: 'read'; path: string }
  | { op: 'write'; path: string; value: string }
  | { op: 'ls'; path: string }
  | { op: 'readlink'; path: string }
  | { op: 'guest-open'; uuid: string; guest: string }
  | { op: 'guest-close'; uuid: string }
  | { op: 'aqic'; uuid: string; apqn: string; nib: number }
  | { op: 'requests'; apqn: string; count: number }
  | { op: 'workload'; apqn: string; perSecond: number }
  | { op: 'stats'; apqn: string }
  | { op: 'hw'; action: HardwareAction }
  | { op: 'scan' }
  | { op: 'events' }
  | { op: 'advance'; ms: number }
  | { op: 'now' }

function execute(session: ShellSession, c: Command): ShellReply {
  const host = session.host
  switch (c.op) {
    case 'read':
      return { ok: true, value: host.read(c.path) }
    case 'write':
      host.write(c.path, c.value)
      return { ok: true }
    case 'ls':
      return { ok: true, entries: host.list(c.path) }
    case 'readlink':
      return { ok: true, target: host.readlink(c.path) }
    case 'guest-open':
      host.guestOpen(c.uuid, c.guest)
      return { ok: true }
    case 'guest-close':
      host.guestClose(c.uuid)
      return { ok: true }
    case 'aqic':
      return { ok: true, rc: host.guestAqic(c.uuid, c.apqn, c.nib) }
    case 'requests':
      return { ok: true, accepted: host.submitRequests(c.apqn, c.count) }
    case 'workload':
      host.setWorkload(c.apqn, c.perSecond)
      return { ok: true }
    case 'stats':
      return { ok: true, stats: host.requestStats(c.apqn) }
    case 'hw':
      host.hardware(c.action)
      return { ok: true }
    case 'scan':
      host.scan()
      return { ok: true }
    case 'events': {
      const events = host.events(session.lastEventSeq)
      if (events.length > 0) session.lastEventSeq = events[events.length - 1]!.seq
      return { ok: true, events }
    }
    case 'advance':
      host.advance(c.ms)
      return { ok: true, now: host.now() }
    case 'now':
      return { ok: true, now: host.now() }
  }
}

/**
 * Plain verbs, like a root shell: `read PATH`, `ls PATH`, `readlink PATH`, `write PATH VALUE`.
 * `write` behaves like `echo VALUE > PATH`: VALUE is everything after the one space that follows
 * PATH (possibly empty, possibly with spaces) and a newline is appended.
 */
function parsePlainCommand(line: string): Command {
  const sp = line.indexOf(' ')
  const verb = sp < 0 ? line : line.slice(0, sp)
  const rest = sp < 0 ? '' : line.slice(sp + 1)
  switch (verb) {
    case 'read':
    case 'ls':
    case 'readlink':
      if (rest === '' || /\s/.test(rest)) throw new BadLine(`usage: ${verb} PATH (exactly one path, no spaces)`)
      return { op: verb, path: checkPath(rest) }
    case 'write': {
      const sp2 = rest.indexOf(' ')
      const path = sp2 < 0 ? rest : rest.slice(0, sp2)
      if (path === '') throw new BadLine('usage: write PATH VALUE')
      const value = sp2 < 0 ? '' : rest.slice(sp2 + 1)
      return { op: 'write', path: checkPath(path), value: `${value}\n` }
    }
    default:
      throw new BadLine(`unknown command '${clip(verb, 40)}' (plain verbs: read, write, ls, readlink; other ops use the JSON form)`)
  }
}

function parseJsonCommand(line: string): Command {
  let v: unknown
  try {
    v = JSON.parse(line)
  } catch (e) {
    throw new BadLine(`bad JSON: ${(e as Error).message}`)
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new BadLine('a JSON command must be an object')
  const f = new Fields(v as Record<string, unknown>)
  const op = f.str('op', 32)
  let c: Command
  switch (op) {
    case 'read':
    case 'ls':
    case 'readlink':
    case 'stats':
      c = op === 'stats' ? { op, apqn: f.apqn('apqn') } : { op, path: f.path() }
      break
    case 'write':
      c = { op, path: f.path(), value: f.str('value', MAX_LINE_BYTES, true) }
      break
    case 'guest-open':
      c = { op, uuid: f.str('uuid', MAX_NAME), guest: f.str('guest', MAX_NAME, true) }
      break
    case 'guest-close':
      c = { op, uuid: f.str('uuid', MAX_NAME) }
      break
    case 'aqic':
      c = { op, uuid: f.str('uuid', MAX_NAME), apqn: f.apqn('apqn'), nib: f.int('nib', 0, Number.MAX_SAFE_INTEGER) }
      break
    case 'requests':
      c = { op, apqn: f.apqn('apqn'), count: f.int('count', 1, MAX_REQUESTS) }
      break
    case 'workload':
      c = { op, apqn: f.apqn('apqn'), perSecond: f.int('perSecond', 0, MAX_REQUESTS) }
      break
    case 'hw':
      c = { op, action: parseHardwareAction(f) }
      break
    case 'advance':
      c = { op, ms: f.int('ms', 0, MAX_ADVANCE_MS) }
      break
    case 'scan':
    case 'events':
    case 'now':
      c = { op }
      break
    default:
      throw new BadLine(`unknown op '${op}'`)
  }
  f.noOthers(op)
  return c
}

/** The `hw` op: the fields each {@link HardwareAction} takes, nothing else. */
function parseHardwareAction(f: Fields): HardwareAction {
  const action = f.str('action', 32)
  const notify = f.optBool('notify')
  const withNotify = <T extends object>(a: T): T => (notify === undefined ? a : { ...a, notify })
  switch (action) {
    case 'config-off':
    case 'config-on':
    case 'checkstop':
    case 'checkstop-clear': {
      const apid = f.id('apid')
      const apqi = f.optId('apqi')
      return withNotify(apqi === undefined ? { action, apid } : { action, apid, apqi })
    }
    case 'add-adapter': {
      const a: HardwareAction = { action, apid: f.id('apid') }
      const rawType = f.optId('rawType')
      const type = f.optStr('type', 32)
      const mode = f.optMode('mode')
      const functions = f.has('functions') ? f.id('functions', 0xffff_ffff) : undefined
      if (rawType !== undefined) a.rawType = rawType
      if (type !== undefined) a.type = type
      if (mode !== undefined) a.mode = mode
      if (functions !== undefined) a.functions = functions
      return withNotify(a)
    }
    case 'remove-adapter':
      return withNotify({ action, apid: f.id('apid') })
    case 'add-domain':
    case 'remove-domain': {
      const apqi = f.id('apqi')
      const control = f.optBool('control')
      return withNotify(control === undefined ? { action, apqi } : { action, apqi, control })
    }
    case 'set-mode': {
      const apid = f.id('apid')
      const mode = f.optMode('mode')
      if (mode === undefined) throw new BadLine(`hw set-mode: 'mode' is required (${MODES.join(', ')})`)
      return withNotify({ action, apid, mode })
    }
    default:
      throw new BadLine(`hw: unknown action '${action}'`)
  }
}

/** Strict reader of one JSON command object: typed, bounded, required fields; unknown fields rejected. */
class Fields {
  private readonly used = new Set<string>()
  constructor(private readonly obj: Record<string, unknown>) {}

  has(name: string): boolean {
    return Object.hasOwn(this.obj, name)
  }

  private take(name: string): unknown {
    this.used.add(name)
    return this.obj[name]
  }

  /** A required string of at most `max` characters; empty only when `allowEmpty`. */
  str(name: string, max: number, allowEmpty = false): string {
    if (!this.has(name)) throw new BadLine(`'${name}' is required`)
    const v = this.take(name)
    if (typeof v !== 'string') throw new BadLine(`'${name}' must be a string`)
    if (v === '' && !allowEmpty) throw new BadLine(`'${name}' must not be empty`)
    if (v.length > max) throw new BadLine(`'${name}' is longer than ${max} characters`)
    return v
  }

  optStr(name: string, max: number): string | undefined {
    return this.has(name) ? this.str(name, max) : undefined
  }

  path(): string {
    return checkPath(this.str('path', MAX_PATH))
  }

  /** A required integer in min..max (a JSON number, not a string). */
  int(name: string, min: number, max: number): number {
    if (!this.has(name)) throw new BadLine(`'${name}' is required`)
    const v = this.take(name)
    if (typeof v !== 'number' || !Number.isInteger(v)) throw new BadLine(`'${name}' must be an integer`)
    if (v < min || v > max) throw new BadLine(`'${name}' must be in ${min}..${max}`)
    return v
  }

  /** An adapter or domain id (docs/api.md (Resources): integer, or decimal / 0x hex string), 0..max. */
  id(name: string, max = 255): number {
    if (!this.has(name)) throw new BadLine(`'${name}' is required`)
    try {
      return parseId(this.take(name), name, max)
    } catch (e) {
      throw new BadLine((e as Error).message)
    }
  }

  optId(name: string): number | undefined {
    return this.has(name) ? this.id(name) : undefined
  }

  optBool(name: string): boolean | undefined {
    if (!this.has(name)) return undefined
    const v = this.take(name)
    if (typeof v !== 'boolean') throw new BadLine(`'${name}' must be true or false`)
    return v
  }

  optMode(name: string): AdapterMode | undefined {
    if (!this.has(name)) return undefined
    const v = this.take(name)
    if (typeof v !== 'string' || !(MODES as readonly string[]).includes(v)) throw new BadLine(`'${name}' must be one of ${MODES.join(', ')}`)
    return v as AdapterMode
  }

  /** An APQN as `05.0004` (either case); returned in the kernel's lowercase form. */
  apqn(name: string): string {
    const s = this.str(name, 16)
    try {
      const q = parseApqn(s, name)
      return formatApqn(q.apid, q.apqi)
    } catch (e) {
      throw new BadLine((e as Error).message)
    }
  }

  /** Rejects fields the op does not take (so a typo such as `"cont"` is an error, not a silent default). */
  noOthers(op: string): void {
    const extra = Object.keys(this.obj).filter((k) => k !== 'op' && !this.used.has(k))
    if (extra.length > 0) throw new BadLine(`${op}: unknown field${extra.length > 1 ? 's' : ''} ${extra.map((k) => `'${clip(k, 40)}'`).join(', ')}`)
  }
}

function checkPath(p: string): string {
  if (p.length > MAX_PATH) throw new BadLine(`path longer than ${MAX_PATH} characters`)
  if (!p.startsWith('/')) throw new BadLine(`path must be absolute: '${clip(p, 80)}'`)
  return p
}

/**
 * Splits a byte stream into lines on `\n` only (a lone `\r` is data), without ever buffering more than
 * {@link MAX_LINE_BYTES} + 1 bytes of one line: a longer line is cut and reported as overlong, so a
 * client that never sends a newline cannot grow the shell's memory.
 */
export class LineSplitter {
  private parts: Buffer[] = []
  private size = 0
  private overlong = false

  /** Feeds a chunk; calls `onLine` for each complete line (`overlong` true when it was cut). */
  push(chunk: Buffer, onLine: (line: string, overlong: boolean) => void): void {
    let from = 0
    for (;;) {
      const nl = chunk.indexOf(0x0a, from)
      const piece = chunk.subarray(from, nl < 0 ? chunk.length : nl)
      this.append(piece)
      if (nl < 0) return
      this.emit(onLine)
      from = nl + 1
    }
  }

  /** At EOF: a last line without a newline still counts as a line. */
  end(onLine: (line: string, overlong: boolean) => void): void {
    if (this.size > 0 || this.overlong) this.emit(onLine)
  }

  private append(piece: Buffer): void {
    if (this.overlong || piece.length === 0) return
    if (this.size + piece.length > MAX_LINE_BYTES + 1) {
      // +1 keeps room for the `\r` of a CRLF line of exactly MAX_LINE_BYTES.
      this.overlong = true
      this.parts = []
      this.size = 0
      return
    }
    this.parts.push(Buffer.from(piece))
    this.size += piece.length
  }

  private emit(onLine: (line: string, overlong: boolean) => void): void {
    const line = Buffer.concat(this.parts, this.size).toString('utf8')
    const overlong = this.overlong
    this.parts = []
    this.size = 0
    this.overlong = false
    onLine(line, overlong)
  }
}

/**
 * Runs the protocol over streams until `input` ends: one JSON line on `output` per non-blank,
 * non-comment input line, in input order. Resolves `'eof'` when every answer is written, or
 * `'output-closed'` as soon as `output` fails or closes (EPIPE: nobody is left to answer; input stops
 * being read).
 */
export async function runShell(session: ShellSession, input: NodeJS.ReadableStream, output: NodeJS.WritableStream): Promise<'eof' | 'output-closed'> {
  const splitter = new LineSplitter()
  const pending: string[] = []
  let closed = false
  let wake: (() => void) | undefined
  const onGone = (): void => {
    if (closed) return
    closed = true
    wake?.()
    // Stop waiting for input nobody will see answered (ends the for-await below).
    ;(input as Partial<Readable>).destroy?.()
  }
  output.on('error', onGone)
  output.on('close', onGone)
  const onLine = (line: string, overlong: boolean): void => {
    const reply = overlong ? fail('EINVAL', `line longer than ${MAX_LINE_BYTES} bytes`) : handleShellLine(session, line)
    if (reply !== undefined) pending.push(`${JSON.stringify(reply)}\n`)
  }
  const flush = async (): Promise<void> => {
    if (pending.length === 0 || closed) return
    const text = pending.join('')
    pending.length = 0
    if (output.write(text)) return
    await new Promise<void>((resolve) => {
      wake = resolve
      output.once('drain', resolve)
    })
    wake = undefined
  }
  try {
    for await (const chunk of input) {
      splitter.push(typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer), onLine)
      await flush()
      if (closed) return 'output-closed'
    }
    splitter.end(onLine)
    await flush()
    return closed ? 'output-closed' : 'eof'
  } catch (e) {
    // Destroying the input (above) ends the iteration with a premature-close error.
    if (closed) return 'output-closed'
    throw e
  } finally {
    output.off('error', onGone)
    output.off('close', onGone)
  }
}
