/**
 * Injected write faults through the emulator's faces: the remote emulator's gRPC face (EmulatorControl.SetFaults,
 * HostBus Write), the FUSE operations (called directly: every machine) and a real FUSE mount (write(2) meets
 * the errno). src/emulator/faults.ts holds the rules themselves (test/emulator/faults.test.ts).
 */
import fs from 'node:fs'
import os from 'node:os'
import t from 'tap'
import { ApmatrixError, SysfsError } from '../../src/domain/errors.js'
import { createHost } from '../../src/emulator/host.js'
import { FaultInjector } from '../../src/emulator/faults.js'
import { sysfsOperations } from '../../src/emulator/fuse/sysfs-operations.js'
import { fuseMissing, requireOrSkip } from '../helpers/required-tools.js'
import { startMounted } from '../emulator/fuse/mounted-emulator.js'
import { BUS, startRemote } from './helpers.js'

const APMASK = `${BUS}/apmask`
const FULL = `0x${'f'.repeat(64)}\n`

async function errorOf(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => undefined,
    (e: unknown) => e,
  )
}

t.test('remote: an injected EIO fails the Write with the errno, changes nothing and is in the write log', async (t) => {
  const { client } = await startRemote(t)
  const st = await client.setFaults({ rules: [{ path: APMASK, rate: 1, kind: 'eio' }], seed: 5 })
  t.match(st, { seed: 5, writes: 0, failed: 0, rules: [{ path: APMASK, rate: 1, kind: 'eio', matched: 0, injected: 0 }] })
  const e = await errorOf(client.write(APMASK, '-5\n'))
  t.ok(e instanceof SysfsError && e.errno === 'EIO', `SysfsError EIO (${String(e)})`)
  t.match((e as Error).message, /injected fault \(rule 0\)/)
  t.equal(await client.read(APMASK), FULL, 'the mask is unchanged')
  const log = (await client.writeLog()).entries
  t.match(log.at(-1), { path: APMASK, value: '-5\n', errno: 'EIO' }, 'the write log shows the failed write')
  await client.write(`${BUS}/aqmask`, '-4\n')
  t.match(await client.faults(), { writes: 2, failed: 1, rules: [{ matched: 1, injected: 1 }] }, 'counts: another path is checked, not hit')
  const cleared = await client.setFaults({ rules: [] })
  t.same(cleared.rules, [])
  await client.write(APMASK, '-5\n')
  t.not(await client.read(APMASK), FULL, 'without rules the write goes through')
})

t.test('remote: a delayed write is made when the delay is over; faults stay across Reboot', async (t) => {
  const { client } = await startRemote(t)
  await client.setFaults({ rules: [{ path: '/sys/bus/ap', rate: 1, kind: 'delay', delayMs: 1500 }], seed: 1 })
  const w = client.write(APMASK, '-5\n')
  await new Promise((r) => setTimeout(r, 100))
  t.equal(await client.read(APMASK), FULL, 'not made yet while the write waits')
  await w
  t.not(await client.read(APMASK), FULL, 'made once the write answered')
  await client.reboot()
  t.match(await client.faults(), { delayed: 1, rules: [{ kind: 'delay', delayMs: 1500 }] }, 'the rules survive a reboot')
})

t.test('remote: a bad configuration is INVALID_ARGUMENT and leaves the rules in force', async (t) => {
  const { client } = await startRemote(t)
  await client.setFaults({ rules: [{ path: APMASK, rate: 1, kind: 'ebusy' }], seed: 1 })
  for (const bad of [
    { rules: [{ path: APMASK, rate: 2, kind: 'eio' }] },
    { rules: [{ path: 'bus/ap/apmask', rate: 1, kind: 'eio' }] },
    { rules: [{ path: APMASK, rate: 1, kind: 'enoent' }] },
    { rules: [{ path: APMASK, rate: 1, kind: 'delay' }] },
  ]) {
    const e = await errorOf(client.setFaults(bad as never))
    t.ok(e instanceof ApmatrixError && e.code === 'INVALID_ARGUMENT', `INVALID_ARGUMENT for ${JSON.stringify(bad)}: ${String(e)}`)
  }
  const e = await errorOf(client.write(APMASK, '-5\n'))
  t.ok(e instanceof SysfsError && e.errno === 'EBUSY', 'the earlier rule is still in force')
})

t.test('FUSE operations: the writer gets -EIO/-EBUSY; a delayed write answers after the delay', async (t) => {
  const host = createHost({ profile: 'spec-fixture' })
  const faults = new FaultInjector()
  const ops = sysfsOperations({
    read: (p) => host.read(p),
    list: (p) => host.list(p),
    readlink: (p) => host.readlink(p),
    stat: (p) => host.stat(p),
    exists: (p) => host.exists(p),
    writeFault: (p) => faults.decide(p),
    write: (p, v, f) => {
      if (f?.errno) throw new SysfsError(f.errno, f.message)
      host.write(p, v)
    },
  })
  const fd = await new Promise<number>((r) => ops.open('/bus/ap/apmask', 1, (_c, fd) => r(fd!)))
  const write = (s: string) => new Promise<number>((r) => ops.write('/bus/ap/apmask', fd, Buffer.from(s), s.length, 0, r))
  faults.set({ rules: [{ path: APMASK, rate: 1, kind: 'ebusy' }], seed: 1 })
  t.equal(await write('-5\n'), -os.constants.errno.EBUSY)
  faults.set({ rules: [{ path: '/sys/bus', rate: 1, kind: 'eio' }], seed: 1 })
  t.equal(await write('-5\n'), -os.constants.errno.EIO)
  t.equal(host.read(APMASK), FULL, 'nothing changed')
  faults.set({ rules: [{ path: APMASK, rate: 1, kind: 'delay', delayMs: 200 }], seed: 1 })
  let answered = false
  const w = write('-5\n').then((n) => ((answered = true), n))
  await new Promise((r) => setImmediate(r))
  t.equal(answered, false, 'no answer before the delay')
  t.equal(await w, 3, 'then the whole write is taken')
  t.not(host.read(APMASK), FULL)
})

requireOrSkip(t, 'FUSE mount: write(2) fails with the injected errno, for the agent and the sysfs driver alike', fuseMissing(), async (t) => {
  const m = await startMounted(t)
  await m.client.setFaults({ rules: [{ path: APMASK, rate: 1, kind: 'ebusy' }], seed: 1 })
  const e = (() => {
    try {
      fs.writeFileSync(`${m.dir}/bus/ap/apmask`, '-5\n')
    } catch (err) {
      return err as NodeJS.ErrnoException
    }
    return undefined
  })()
  t.equal(e?.code, 'EBUSY', 'write(2) answered EBUSY')
  t.equal(fs.readFileSync(`${m.dir}/bus/ap/apmask`, 'utf8'), FULL)
  t.match((await m.client.writeLog()).entries.at(-1), { path: APMASK, errno: 'EBUSY', origin: 'fuse' }, 'logged with its errno')
  await m.client.setFaults({ rules: [{ path: APMASK, rate: 1, kind: 'eio' }], seed: 1 })
  t.throws(() => fs.writeFileSync(`${m.dir}/bus/ap/apmask`, '-5\n'), { code: 'EIO' })
  await m.client.setFaults({ rules: [{ path: APMASK, rate: 1, kind: 'delay', delayMs: 300 }], seed: 1 })
  const done = fs.promises.writeFile(`${m.dir}/bus/ap/apmask`, '-5\n')
  // Other requests are served while a write waits (reads of the same mount).
  t.equal(fs.readFileSync(`${m.dir}/bus/ap/aqmask`, 'utf8'), FULL, 'a read is answered while the write waits')
  await done
  t.not(fs.readFileSync(`${m.dir}/bus/ap/apmask`, 'utf8'), FULL, 'the delayed write was made')
})
