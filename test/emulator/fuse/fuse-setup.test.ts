/**
 * What `--mount` checks before it mounts, without mounting: the binding, the FUSE device, the mount
 * directory (mountinfo parsing; a non-FUSE filesystem is never touched). Runs on every machine.
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import { FuseUnavailableError, loadFuseBinding } from '../../../src/emulator/fuse/fuse-binding.js'
import { canonicalMountDir, inspectMountpoint, mountAt, parseMountinfo, prepareMountpoint } from '../../../src/emulator/fuse/mountpoint.js'
import { checkFuseDevice } from '../../../src/emulator/fuse/sysfs-mount.js'

const MOUNTINFO = [
  '22 1 259:2 / / rw,relatime shared:1 - ext4 /dev/root rw',
  '45 22 0:40 / /tmp/a\\040dir rw,nosuid,nodev,relatime shared:20 - fuse.apmatrix apmatrix-emulator rw,user_id=0,group_id=0',
  '46 22 0:41 / /tmp/plain rw,relatime - fuse /dev/fuse rw,user_id=0',
  '47 22 0:42 / /tmp/plain rw,relatime - tmpfs tmpfs rw',
  'garbage line',
  '',
].join('\n')

t.test('mountinfo: mount point, type and source, with \\ooo escapes; the newest of stacked mounts', async (t) => {
  t.same(
    parseMountinfo(MOUNTINFO).map((m) => [m.mountPoint, m.fsType, m.source]),
    [
      ['/', 'ext4', '/dev/root'],
      ['/tmp/a dir', 'fuse.apmatrix', 'apmatrix-emulator'],
      ['/tmp/plain', 'fuse', '/dev/fuse'],
      ['/tmp/plain', 'tmpfs', 'tmpfs'],
    ],
  )
  t.equal(mountAt('/tmp/a dir', MOUNTINFO)?.fsType, 'fuse.apmatrix')
  t.equal(mountAt('/tmp/plain', MOUNTINFO)?.fsType, 'tmpfs', 'the one mounted last is what the path shows')
  t.equal(mountAt('/tmp/none', MOUNTINFO), undefined)
})

t.test('the mount directory: canonical without touching it; created if missing; a non-FUSE mount is refused, never unmounted', async (t) => {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'apmatrix-mnt-'))
  t.teardown(() => fs.rmSync(base, { recursive: true, force: true }))
  fs.symlinkSync(base, `${base}-link`)
  t.teardown(() => fs.rmSync(`${base}-link`, { force: true }))
  t.equal(canonicalMountDir(`${base}-link/x/`), path.join(fs.realpathSync(base), 'x'), 'the parent is resolved, the directory itself is not touched')
  t.same(await inspectMountpoint(path.join(base, 'x')), { state: 'free' })
  const made = await prepareMountpoint(`${base}-link/x`)
  t.equal(made, path.join(fs.realpathSync(base), 'x'))
  t.ok(fs.statSync(made).isDirectory(), 'created')
  const procState = await inspectMountpoint('/proc')
  t.match(procState, { state: 'busy', reason: /a proc filesystem is mounted there/ })
  await t.rejects(prepareMountpoint('/proc'), { name: 'FuseUnavailableError', message: /cannot mount on \/proc: a proc filesystem/ })
  t.ok(fs.existsSync('/proc/self/mountinfo'), '/proc is still mounted')
  t.equal(await prepareMountpoint(path.join(base, 'new/parents/sys')), path.join(fs.realpathSync(base), 'new/parents/sys'), 'missing parents are created')
  fs.writeFileSync(path.join(base, 'file'), '')
  await t.rejects(prepareMountpoint(path.join(base, 'file')), { name: 'FuseUnavailableError', message: /mount directory .*file/ })
  await t.rejects(prepareMountpoint(path.join(base, 'file/below')), { name: 'FuseUnavailableError', message: /mount directory .*file\/below/ })
  await t.rejects(prepareMountpoint(base), { name: 'FuseUnavailableError', message: /is not empty \(a FUSE mount needs an empty directory\)/ })
})

t.test('the FUSE device: missing, or not a device, is a clear FuseUnavailableError', async (t) => {
  t.throws(() => checkFuseDevice('/nonexistent/fuse'), {
    name: 'FuseUnavailableError',
    message: /\/nonexistent\/fuse does not exist: load the fuse kernel module/,
  })
  t.throws(() => checkFuseDevice('/'), { name: 'FuseUnavailableError', message: /cannot open \/: .*EISDIR/ })
})

t.test('the binding: a package that is not installed is a FuseUnavailableError that says how to install it', async (t) => {
  t.throws(() => loadFuseBinding('fuse-native-not-installed'), {
    name: 'FuseUnavailableError',
    message: /optional npm package fuse-native-not-installed is not installed .*npm install/,
  })
  let binding: unknown
  try {
    binding = loadFuseBinding()
  } catch (e) {
    if (!(e instanceof FuseUnavailableError)) throw e
    // Without the optional package (npm install --omit=optional) this is the expected answer.
    t.match(e.message, /fuse-native/)
    return
  }
  t.equal(typeof binding, 'function', 'fuse-native loads here (its own libfuse when the system has none)')
  t.equal(loadFuseBinding(), binding, 'loaded once')
})
