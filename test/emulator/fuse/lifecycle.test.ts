/**
 * The life cycle of `apmatrix emulator serve --mount DIR` as a process: SIGTERM and SIGINT unmount; a
 * SIGKILLed server leaves a dead mount ("Transport endpoint is not connected") that the next start
 * clears; a second server refuses a directory that a live one serves; without FUSE the command says why
 * and exits 69 before it binds anything.
 */
import fs from 'node:fs'
import path from 'node:path'
import { PassThrough } from 'node:stream'
import t from 'tap'
import { emulatorServe } from '../../../src/cli/commands/emulator-serve.js'
import { mountAt } from '../../../src/emulator/fuse/mountpoint.js'
import { fuseMissing, requireOrSkip } from '../../helpers/required-tools.js'
import { spawnCli } from '../../reliability/cli-process.js'
import { scratchDir, startMounted } from './mounted-emulator.js'

const SERVE = ['emulator', 'serve', '--addr', '127.0.0.1:0', '--profile', 'spec-fixture', '--clock', 'manual']

t.test('--mount without a directory is a usage error (exit 2)', async (t) => {
  const err = new PassThrough()
  let text = ''
  err.on('data', (d) => (text += String(d)))
  t.equal(await emulatorServe(['--mount', ''], { stdin: new PassThrough(), stdout: new PassThrough(), stderr: err, env: {} }), 2)
  t.match(text, /--mount: a directory is required/)
})

t.test('without FUSE: a clear message, exit 69, nothing bound or mounted', async (t) => {
  const dir = path.join(scratchDir(t), 'sys')
  const cli = spawnCli(t, [...SERVE, '--mount', dir], { APMATRIX_FUSE_DEVICE: '/nonexistent/fuse' })
  const exit = await cli.exited
  t.same(exit, { code: 69, signal: null })
  t.same(cli.stdout, [], 'no ready line')
  t.match(
    cli.stderr.join('\n'),
    new RegExp(
      `^apmatrix emulator serve: --mount ${dir}: cannot mount the emulator's sysfs: (/nonexistent/fuse does not exist: load the fuse kernel module|the optional npm package fuse-native is not installed)`,
    ),
  )
  t.equal(mountAt(dir), undefined)
})

requireOrSkip(
  t,
  'SIGTERM unmounts; SIGKILL leaves a dead mount the next start clears; a live mount is not taken over; SIGINT unmounts',
  fuseMissing(),
  async (t) => {
    const first = await startMounted(t)
    const dir = first.dir
    t.ok(mountAt(dir), 'mounted')
    first.cli.proc.kill('SIGTERM')
    t.same(await first.cli.exited, { code: 0, signal: null }, 'SIGTERM: exit 0')
    t.equal(mountAt(dir), undefined, 'SIGTERM: unmounted')
    t.match(first.cli.stderr.join('\n'), /sysfs unmounted from/)

    const second = await startMounted(t, { dir })
    second.cli.proc.kill('SIGKILL')
    await second.cli.exited
    t.ok(mountAt(dir), 'SIGKILL: the mount stays behind')
    await t.rejects(fs.promises.stat(dir), { code: 'ENOTCONN' }, 'and is dead: Transport endpoint is not connected')

    const third = await startMounted(t, { dir })
    t.match(third.cli.stderr.join('\n'), /clearing a stale FUSE mount at .* left by a process that is gone/)
    t.equal(fs.readFileSync(path.join(dir, 'bus/ap/apmask'), 'utf8'), `0x${'f'.repeat(64)}\n`, 'the new mount serves')
    t.equal(await third.client.read('/sys/bus/ap/apmask'), `0x${'f'.repeat(64)}\n`)

    const intruder = spawnCli(t, [...SERVE, '--mount', dir])
    t.same(await intruder.exited, { code: 69, signal: null }, 'a second server on a live mount: exit 69')
    t.match(
      intruder.stderr.join('\n'),
      /cannot mount on .*: a live FUSE filesystem \(apmatrix-emulator\) is mounted there: is another 'apmatrix emulator serve --mount' running\?/,
    )
    t.equal(fs.readFileSync(path.join(dir, 'bus/ap/bindings'), 'utf8'), '12/12 (complete)\n', 'the first one still serves')

    third.cli.proc.kill('SIGINT')
    t.same(await third.cli.exited, { code: 0, signal: null }, 'SIGINT: exit 0')
    t.equal(mountAt(dir), undefined, 'SIGINT: unmounted')
  },
)
