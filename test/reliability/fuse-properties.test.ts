/**
 * The kernel model's properties through the emulator's two outside faces (issue 11 §1): random operation
 * sequences (test/emulator/kernel-properties.ts, the ones test/emulator/properties.test.ts runs on the
 * emulator itself) applied to `apmatrix emulator serve --mount` (a child process, spec-fixture, manual
 * clock): each sysfs write goes through the FUSE mount (node:fs on the mounted tree) or through the
 * remote sysfs face (the host-bus gRPC `Write`), drawn at random per step; guests, requests, hardware and
 * time through the emulator's control API. After every step, read through the mount: a failed write
 * changed nothing, a flush emptied its queues, the invariants hold; and the remote sysfs face shows the
 * same tree as the mount. The host is rebooted (a fresh kernel state) before each sequence; the mount is
 * detached at the end.
 */
import fs from 'node:fs'
import path from 'node:path'
import fc from 'fast-check'
import t from 'tap'
import { type Errno, SysfsError } from '../../src/domain/errors.js'
import { RemoteHostError } from '../../src/emulator-remote/client.js'
import { mountAt } from '../../src/emulator/fuse/mountpoint.js'
import { checkStep, invariantViolations, isMutating, type Op, opArb, PRELUDE, show, snapshot, type SysfsView } from '../emulator/kernel-properties.js'
import { type MountedEmulator, startMounted } from '../emulator/fuse/mounted-emulator.js'
import { fuseMissing, requireOrSkip } from '../helpers/required-tools.js'
import { failureReport, Tally } from './fuzz-service.js'

/**
 * Sequences of the run (about 20 steps each), and its time box: every read of the mounted tree is a round
 * trip to the server process (~1 ms), and each step is checked with ~150 of them and ~60 gRPC reads, so a
 * sequence takes ~7 s on a 2-core machine (24 of 50 fitted the box in a run: 20 leave a margin).
 */
const SEQUENCES = 20
const TIME_BOX_MS = 160_000

/** The face a write goes through. */
type Face = 'mount' | 'grpc'

/** node:fs errors as the SysfsError the checks expect (ENOENT: a missing node). */
function asSysfsError(e: unknown): unknown {
  const code = (e as NodeJS.ErrnoException).code
  return typeof code === 'string' && /^E[A-Z]+$/.test(code) ? new SysfsError(code as Errno, (e as Error).message) : e
}

/** The mounted tree (`dir` plays /sys) as the checks read it. */
function mountView(dir: string): SysfsView {
  const at = (p: string) => path.join(dir, p.replace(/^\/sys(?=\/|$)/, ''))
  const wrap = <T>(fn: () => T): T => {
    try {
      return fn()
    } catch (e) {
      throw asSysfsError(e)
    }
  }
  return {
    read: (p) => wrap(() => fs.readFileSync(at(p), 'utf8')),
    list: (p) => wrap(() => fs.readdirSync(at(p))),
    readlink: (p) => wrap(() => fs.readlinkSync(at(p))),
  }
}

/**
 * A view that reads each node once (answers and errors kept): the checks after one step read many nodes
 * twice, and the tree does not change between them (manual clock, nothing else writes).
 */
function memo(view: SysfsView): SysfsView {
  const seen = new Map<string, { value?: unknown; error?: unknown }>()
  const once =
    <T>(how: 'read' | 'list' | 'readlink') =>
    (p: string): T => {
      let a = seen.get(`${how} ${p}`)
      if (!a) {
        try {
          a = { value: view[how](p) }
        } catch (error) {
          a = { error }
        }
        seen.set(`${how} ${p}`, a)
      }
      if (a.error) throw a.error
      return a.value as T
    }
  return { read: once('read'), list: once('list'), readlink: once('readlink') }
}

type Snapshot = Record<string, string | null>
type Asked = Array<['read' | 'list' | 'readlink', string]>

/** The snapshot of the mount, and every read it took (so the remote face can be asked the same). */
function snapshotOf(mount: SysfsView): { snap: Snapshot; asked: Asked } {
  const asked: Asked = []
  const recording: SysfsView = {
    read: (p) => (asked.push(['read', p]), mount.read(p)),
    list: (p) => (asked.push(['list', p]), mount.list(p)),
    readlink: (p) => (asked.push(['readlink', p]), mount.readlink(p)),
  }
  return { snap: snapshot(recording), asked }
}

/** The same snapshot of the remote sysfs face: the reads of the mount's snapshot asked over gRPC (all at once). */
async function remoteSnapshot(em: MountedEmulator, asked: Asked): Promise<Snapshot> {
  const answers = new Map<string, { value?: unknown; error?: unknown }>()
  await Promise.all(
    asked.map(async ([how, p]) => {
      try {
        answers.set(`${how} ${p}`, { value: await em.client[how](p) })
      } catch (e) {
        if (e instanceof RemoteHostError) throw e
        answers.set(`${how} ${p}`, { error: e })
      }
    }),
  )
  const answer = (how: string, p: string) => {
    const a = answers.get(`${how} ${p}`)
    if (!a) throw new Error(`the remote face has ${how} ${p}, which the mount does not show`)
    if (a.error) throw a.error
    return a.value
  }
  return snapshot({
    read: (p) => answer('read', p) as string,
    list: (p) => answer('list', p) as string[],
    readlink: (p) => answer('readlink', p) as string,
  })
}

/** Applies `op`: a write through `face`, anything else through the control API. Resolves to the errno of a refusal. */
async function apply(em: MountedEmulator, op: Op, face: Face): Promise<{ errno: string } | undefined> {
  const c = em.client
  try {
    switch (op.op) {
      case 'write':
        if (face === 'mount') fs.writeFileSync(path.join(em.dir, op.path.replace(/^\/sys/, '')), op.value)
        else await c.write(op.path, op.value)
        return undefined
      case 'guestOpen':
        await c.guestOpen(op.uuid, op.guest)
        return undefined
      case 'guestClose':
        await c.guestClose(op.uuid)
        return undefined
      case 'requests':
        await c.submitRequests(op.apqn, op.count)
        return undefined
      case 'hardware':
        await c.hardware(op.action)
        return undefined
      case 'advance':
        await c.advance(op.ms)
        return undefined
      case 'scan':
        await c.scan()
        return undefined
    }
  } catch (e) {
    const err = asSysfsError(e)
    if (err instanceof SysfsError) return { errno: err.errno }
    // The control API refuses a bad hardware action (an adapter not in the machine) as the in-process host does.
    if (
      op.op === 'hardware' &&
      !(e instanceof RemoteHostError) &&
      e instanceof Error &&
      'code' in e &&
      (e.code === 'INVALID_ARGUMENT' || e.code === 'NOT_FOUND')
    )
      return { errno: String(e.code) }
    throw new Error(`${show(op)} through ${face} threw ${e instanceof Error ? e.stack : String(e)}, not a kernel error`)
  }
}

requireOrSkip(t, `${SEQUENCES} random sequences through the FUSE mount and the remote sysfs face keep the kernel invariants`, fuseMissing(), async (t) => {
  const started = Date.now()
  const em = await startMounted(t, { profile: 'spec-fixture', clock: 'manual' })
  t.comment(`mounted in ${((Date.now() - started) / 1000).toFixed(1)} s`)
  const run = Date.now()
  const mount = mountView(em.dir)
  const outcomes = new Tally()
  let sequences = 0
  let steps = 0

  const result = await fc.check(
    fc.asyncProperty(
      fc.constantFrom(true, true, true, false),
      fc.array(fc.tuple(opArb, fc.constantFrom<Face>('mount', 'grpc')), { maxLength: 30, size: 'max' }),
      async (prelude, drawn) => {
        sequences++
        await em.client.reboot()
        const booted = memo(mount)
        const initial = invariantViolations(booted)
        if (initial.length) throw new Error(`after boot: ${initial.join('; ')}`)
        const ops: Array<[Op, Face]> = [...(prelude ? PRELUDE.map((op): [Op, Face] => [op, 'mount']) : []), ...drawn]
        // The snapshot after a step is the one before the next (the state is the same).
        let current = snapshotOf(booted)
        for (const [i, [op, face]] of ops.entries()) {
          const where = `step ${i} ${show(op)} through ${face}`
          if (op.op === 'write' && op.prime) {
            for (const q of op.flushes ?? []) await em.client.submitRequests(q, op.prime).catch((e) => (e instanceof SysfsError ? 0 : Promise.reject(e)))
            current = snapshotOf(memo(mount))
          }
          const failed = await apply(em, op, face)
          steps++
          outcomes.add(`${op.op === 'write' ? `write (${face})` : op.op} ${failed ? failed.errno : 'ok'}`)
          const after = memo(mount)
          checkStep(after, op, where, isMutating(op) ? current.snap : undefined, failed)
          current = snapshotOf(after)
          const remote = await remoteSnapshot(em, current.asked)
          const seen = current.snap
          const differ = Object.keys({ ...seen, ...remote }).filter((k) => seen[k] !== remote[k])
          if (differ.length)
            throw new Error(
              `${where}: the remote face and the mount differ at ${differ.map((k) => `${k}: ${JSON.stringify(remote[k])} vs ${JSON.stringify(seen[k])}`).join(', ')}`,
            )
        }
      },
    ),
    { numRuns: SEQUENCES, interruptAfterTimeLimit: TIME_BOX_MS, markInterruptAsFailure: true },
  )
  t.comment(
    `FUSE properties: ${result.numRuns} sequences (${sequences} run, shrinking included), ${steps} steps in ${((Date.now() - run) / 1000).toFixed(0)} s, seed ${result.seed}`,
  )
  t.comment(`steps by outcome: ${outcomes}`)
  if (result.failed) t.fail(result.interrupted ? `interrupted by the time box after ${result.numRuns} runs` : failureReport(result))
  t.equal(result.numRuns, SEQUENCES, `${SEQUENCES} sequences inside the time box`)
  t.ok(outcomes.get('write (mount) ok') > 0 && outcomes.get('write (grpc) ok') > 0, 'writes accepted through both faces')
  t.ok(
    [...outcomes.counts.keys()].some((k) => k.startsWith('write (mount) E')),
    'writes refused through the mount',
  )

  em.cli.proc.kill('SIGTERM')
  t.same(await em.cli.exited, { code: 0, signal: null }, 'SIGTERM: exit 0')
  t.equal(mountAt(em.dir), undefined, 'unmounted')
})
