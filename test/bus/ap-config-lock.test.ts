/**
 * The s390-tools AP configuration lock (src/bus/ap-config-lock.ts) against real other processes: a shell
 * holding `/run/lock/s390apconfig.lock` as chzdev or ap-check would (its pid and a newline), a holder that
 * died (stale), and the in-process queue of holds.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t, { type Test } from 'tap'
import { ApConfigLock, atoi } from '../../src/bus/ap-config-lock.js'
import { BusError, ConfigLockBusyError } from '../../src/bus/port.js'
import { holdLockInOtherProcess } from './lock-holder.js'

function tempLockPath(t: Test): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'apmatrix-lock-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  return path.join(dir, 's390apconfig.lock')
}

/** A pid that belonged to a process that has exited (and was reaped). */
async function deadPid(): Promise<number> {
  const p: ChildProcess = spawn('true')
  await new Promise((r) => p.once('exit', r))
  return p.pid!
}

t.test('atoi reads the pid as C does', async (t) => {
  t.equal(atoi('1234\n'), 1234)
  t.equal(atoi('  42abc'), 42)
  t.equal(atoi(''), 0)
  t.equal(atoi('abc'), 0)
  t.equal(atoi('-7\n'), -7)
  t.equal(atoi('99999999999999999999'), 0, 'out of range: no pid')
})

t.test('take and release: the lock holds our pid and a newline, and nothing is left behind', async (t) => {
  const file = tempLockPath(t)
  const lock = new ApConfigLock({ path: file })
  const hold = await lock.acquire(1000)
  t.equal(fs.readFileSync(file, 'utf8'), `${process.pid}\n`)
  t.same(fs.readdirSync(path.dirname(file)), ['s390apconfig.lock'], 'the temporary file was unlinked after link(2)')
  t.equal(await lock.holder(), String(process.pid))
  await hold.release()
  await hold.release()
  t.same(fs.readdirSync(path.dirname(file)), [], 'release unlinks the lock (twice is harmless)')
})

t.test('a lock held by another live process blocks until that process releases it', async (t) => {
  const file = tempLockPath(t)
  const holder = await holdLockInOtherProcess(t, file)
  const lock = new ApConfigLock({ path: file })
  const started = Date.now()
  const err = await lock.acquire(300).catch((e: unknown) => e)
  t.ok(err instanceof ConfigLockBusyError, 'ConfigLockBusyError after the wait bound')
  t.match(err, { errno: 'EBUSY', holderPid: String(holder.pid), path: file, message: new RegExp(`held by pid ${holder.pid}`) })
  t.ok(Date.now() - started >= 290, 'it waited the whole bound')
  t.equal(fs.readFileSync(file, 'utf8'), `${holder.pid}\n`, "the holder's lock is untouched")

  const waiting = lock.acquire(5000)
  await new Promise((r) => setTimeout(r, 100))
  await holder.release()
  const hold = await waiting
  t.equal(fs.readFileSync(file, 'utf8'), `${process.pid}\n`, 'taken as soon as the holder released it')
  await hold.release()
})

t.test('a stale lock (its pid is gone) is removed and does not block', async (t) => {
  const file = tempLockPath(t)
  const pid = await deadPid()
  fs.writeFileSync(file, `${pid}\n`)
  const lock = new ApConfigLock({ path: file })
  // A wait bound of 0: a lock it had to wait for would be ConfigLockBusyError at once.
  const hold = await lock.acquire(0)
  t.ok(hold, 'taken with a wait bound of 0: no waiting for a dead holder')
  t.equal(fs.readFileSync(file, 'utf8'), `${process.pid}\n`)
  await hold.release()
})

t.test('a lock without a pid is fresh for 120 s (being written), then stale', async (t) => {
  const file = tempLockPath(t)
  fs.writeFileSync(file, '')
  const lock = new ApConfigLock({ path: file })
  await t.rejects(lock.acquire(100), ConfigLockBusyError, 'an empty, new lock counts as held')
  const old = new Date(Date.now() - 121_000)
  fs.utimesSync(file, old, old)
  const hold = await lock.acquire(100)
  t.equal(fs.readFileSync(file, 'utf8'), `${process.pid}\n`, 'an empty lock older than 120 s was removed')
  await hold.release()
})

t.test('release never removes a lock that another owner holds now', async (t) => {
  const file = tempLockPath(t)
  const lock = new ApConfigLock({ path: file })
  const hold = await lock.acquire(100)
  // Someone judged ours stale and took it (cannot happen while we live, but release must stay safe).
  fs.writeFileSync(file, '1\n')
  await hold.release()
  t.equal(fs.readFileSync(file, 'utf8'), '1\n')
})

t.test('holds of one process are serialised in order, and a waiter gives up at its bound', async (t) => {
  const file = tempLockPath(t)
  const lock = new ApConfigLock({ path: file })
  const first = await lock.acquire(100)
  const order: string[] = []
  const second = lock.acquire(2000).then((h) => (order.push('second'), h))
  const impatient = await lock.acquire(50).catch((e: unknown) => e)
  t.match(impatient, { name: 'ConfigLockBusyError', message: /held by this process/ })
  await new Promise((r) => setTimeout(r, 50))
  t.same(order, [], 'the second hold waits for the first')
  order.push('first released')
  await first.release()
  const h2 = await second
  t.same(order, ['first released', 'second'])
  await h2.release()
  t.notOk(fs.existsSync(file))
})

t.test('an abort ends a wait at once', async (t) => {
  const file = tempLockPath(t)
  const holder = await holdLockInOtherProcess(t, file)
  const lock = new ApConfigLock({ path: file })
  const ac = new AbortController()
  const p = lock.acquire(10_000, ac.signal)
  setTimeout(() => ac.abort(new Error('client went away')), 50)
  await t.rejects(p, /client went away/)
  await holder.release()
  const h = await lock.acquire(1000)
  await h.release()
})

t.test('a lock directory that does not exist is an I/O error, not a busy lock', async (t) => {
  const lock = new ApConfigLock({ path: path.join(tempLockPath(t), 'nope', 'x.lock') })
  const err = await lock.acquire(100).catch((e: unknown) => e)
  t.ok(err instanceof BusError && !(err instanceof ConfigLockBusyError))
  t.match(err, { errno: 'ENOENT', message: /cannot create the temporary lock file/ })
})

t.test('bad options are refused at construction', async (t) => {
  t.throws(() => new ApConfigLock({ path: 'relative.lock' }), RangeError)
  t.throws(() => new ApConfigLock({ pid: 0 }), RangeError)
})
