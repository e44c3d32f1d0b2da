/**
 * A reader that goes away ends any verb quietly (src/cli/closed-output.ts, src/cli/EXIT-CODES.md): through
 * real pipes that close (`| head -1` under `set -o pipefail`), the command exits 0 with nothing on stderr,
 * no EPIPE stack trace. Needs the build (bin/apmatrix.mjs runs dist/).
 */
import { spawn } from 'node:child_process'
import { EventEmitter } from 'node:events'
import path from 'node:path'
import t from 'tap'
import { endQuietlyWhenOutputCloses } from '../../src/cli/closed-output.js'
import { projectRoot } from '../../src/paths.js'
import { startServer } from './cli-fixture.js'

const BIN = path.join(projectRoot, 'bin', 'apmatrix.mjs')

/** Runs `script` with bash under `set -euo pipefail`; resolves with its exit code and output. */
function bash(script: string, env: NodeJS.ProcessEnv): { done: Promise<{ code: number | null; stdout: string; stderr: string }> } {
  // --norc: bash reads ~/.bashrc when its stdin is a socket (as from spawn), as if started by sshd.
  const p = spawn('bash', ['--norc', '--noprofile', '-c', `set -euo pipefail\n${script}`], {
    cwd: projectRoot,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/', ...env },
  })
  let stdout = ''
  let stderr = ''
  p.stdout.on('data', (d) => (stdout += d))
  p.stderr.on('data', (d) => (stderr += d))
  return { done: new Promise((resolve) => p.on('close', (code) => resolve({ code, stdout, stderr }))) }
}

t.test('apmatrix events --follow | head -1: the header, then a quiet exit 0 when the next event finds the pipe closed', async (t) => {
  const fx = await startServer(t)
  const run = bash(`node "${BIN}" events --follow | head -1`, { APMATRIX_SERVER: fx.url })
  // New events until the pipeline ends: the first one written after head exited meets EPIPE.
  let ended = false
  void run.done.then(() => (ended = true))
  for (let i = 0; !ended && i < 200; i++) {
    await fx.api('PUT', '/v1/hosts/local/masks', { apmask: i % 2 ? '+9' : '-9' })
    await new Promise((r) => setTimeout(r, 25))
  }
  const r = await run.done
  t.equal(r.code, 0, 'exit 0 through pipefail: the reader stopping is no failure')
  t.match(r.stdout, /^\s+SEQ\s+TIME\s+HOST\s+TYPE\s+OBJECT\s+MESSAGE\n$/, 'the one line head wanted')
  t.equal(r.stderr, '', 'no EPIPE stack trace, no message')
})

t.test('any verb: emulator shell answering more lines than its reader takes', async (t) => {
  // The input comes from a file: a writer upstream of apmatrix would itself die of SIGPIPE under pipefail.
  const script = `in=$(mktemp); trap 'rm -f "$in"' EXIT
for i in $(seq 20000); do echo 'read /sys/bus/ap/apmask'; done > "$in"
node "${BIN}" emulator shell --profile demo < "$in" | head -1`
  const r = await bash(script, {}).done
  t.equal(r.code, 0, r.stderr)
  t.equal(r.stdout, `{"ok":true,"value":"0x${'f'.repeat(64)}\\n"}\n`, 'the first answer, as the kernel reads apmask')
  t.equal(r.stderr, '')
})

t.test('the guard: EPIPE on stdout exits 0; another stdout error is reported and exits 1; EPIPE on stderr is ignored', async (t) => {
  const make = () => {
    const stdout = new EventEmitter()
    const stderr = Object.assign(new EventEmitter(), { text: '', write: (s: string) => (stderr.text += s) })
    const exits: number[] = []
    endQuietlyWhenOutputCloses({ stdout, stderr, exit: (code) => void exits.push(code) })
    return { stdout, stderr, exits }
  }
  const epipe = make()
  epipe.stdout.emit('error', Object.assign(new Error('write EPIPE'), { code: 'EPIPE' }))
  t.same(epipe.exits, [0])
  t.equal(epipe.stderr.text, '')
  const eio = make()
  eio.stdout.emit('error', Object.assign(new Error('write EIO'), { code: 'EIO' }))
  t.same(eio.exits, [1])
  t.equal(eio.stderr.text, 'apmatrix: cannot write to standard output: write EIO\n')
  const err = make()
  err.stderr.emit('error', Object.assign(new Error('write EPIPE'), { code: 'EPIPE' }))
  t.same(err.exits, [], 'nobody is left to tell, and the command goes on')
})
