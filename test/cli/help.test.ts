/**
 * Every verb of the registry, and every group of verbs (`mdev`, `masks`, `emulator`), answers `--help`,
 * `-h` and `apmatrix help <words>` with its help on stdout and exit 0. The list is generated from
 * src/cli/registry.ts, so a new verb is covered without editing this file. The group forms also go through
 * the real binary (bin/apmatrix.mjs, built by `npm run build`).
 */
import { spawnSync } from 'node:child_process'
import path from 'node:path'
import { PassThrough } from 'node:stream'
import t from 'tap'
import { run } from '../../src/cli/main.js'
import { commands } from '../../src/cli/registry.js'
import { projectRoot } from '../../src/paths.js'
import { Sink } from './cli-fixture.js'

async function cli(argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const stdout = new Sink()
  const stderr = new Sink()
  const stdin = new PassThrough()
  stdin.end()
  const code = await run(argv, { stdin, stdout, stderr, env: {} })
  return { code, stdout: stdout.text, stderr: stderr.text }
}

/** Every proper prefix of a verb's path that is not itself a verb: `mdev`, `masks`, `emulator`. */
const groups = [
  ...new Set(
    commands.flatMap((c) => c.path.slice(1).map((_, i) => c.path.slice(0, i + 1).join(' '))).filter((g) => !commands.some((c) => c.path.join(' ') === g)),
  ),
].map((g) => g.split(' '))

t.test('the registry has verbs and groups to check', async (t) => {
  t.ok(commands.length >= 17, `${commands.length} verbs`)
  t.same(
    groups.map((g) => g.join(' ')),
    ['emulator', 'mdev', 'masks', 'auth'],
  )
})

for (const cmd of commands) {
  const name = cmd.path.join(' ')
  t.test(`apmatrix ${name}: --help, -h, help ${name}`, async (t) => {
    t.match(cmd.help, new RegExp(`^Usage: apmatrix ${name}\\b`), 'the help starts with its usage line')
    for (const argv of [
      [...cmd.path, '--help'],
      [...cmd.path, '-h'],
      ['help', ...cmd.path],
      // Asking for help wins over a mistake elsewhere on the line.
      [...cmd.path, '--no-such-option', '--help'],
    ]) {
      const r = await cli(argv)
      t.equal(r.code, 0, `${argv.join(' ')}: exit 0`)
      t.equal(r.stdout, cmd.help, `${argv.join(' ')}: its help on stdout`)
      t.equal(r.stderr, '', `${argv.join(' ')}: nothing on stderr`)
    }
  })
}

for (const group of groups) {
  const name = group.join(' ')
  const verbs = commands.filter((c) => c.path[0] === group[0])
  t.test(`apmatrix ${name}: --help, -h, help ${name} list the group's verbs`, async (t) => {
    for (const argv of [
      [...group, '--help'],
      [...group, '-h'],
      ['help', ...group],
    ]) {
      const r = await cli(argv)
      t.equal(r.code, 0, `${argv.join(' ')}: exit 0`)
      t.match(r.stdout, new RegExp(`^Usage: apmatrix ${name} <command> \\[options\\]\\n`))
      for (const v of verbs) t.match(r.stdout, `  ${v.path.join(' ')}`, `${argv.join(' ')} lists ${v.path.join(' ')}`)
      t.match(r.stdout, `Run 'apmatrix ${name} <command> --help'`)
      t.equal(r.stderr, '')
    }
  })
}

t.test('still usage errors (exit 2): an unknown verb or subverb, a group without a verb, extra words after help', async (t) => {
  for (const [argv, msg] of [
    [['help', 'nope'], /unknown command 'nope'/],
    [['help', 'mdev', 'nope'], /mdev: unknown subcommand 'nope' \(one of: list, get, define/],
    [['mdev'], /mdev: missing subcommand/],
    [['help', 'mdev', 'list', 'extra'], /help: 'extra' follows the command 'mdev list'/],
    [['mdev', 'list', '--no-such-option'], /mdev list: Unknown option '--no-such-option'/],
  ] as const) {
    const r = await cli([...argv])
    t.equal(r.code, 2, argv.join(' '))
    t.match(r.stderr, msg)
    t.equal(r.stdout, '')
  }
})

t.test('the real binary: apmatrix mdev --help and apmatrix help mdev exit 0', async (t) => {
  const bin = path.join(projectRoot, 'bin', 'apmatrix.mjs')
  for (const argv of [
    ['mdev', '--help'],
    ['help', 'mdev'],
    ['help', 'mdev', 'list'],
    ['emulator', '-h'],
  ]) {
    const r = spawnSync(process.execPath, [bin, ...argv], { encoding: 'utf8', env: { PATH: process.env.PATH ?? '' } })
    t.equal(r.status, 0, `${argv.join(' ')}: ${r.stderr}`)
    t.match(r.stdout, /^Usage: apmatrix (mdev|emulator)/)
    t.equal(r.stderr, '')
  }
})
