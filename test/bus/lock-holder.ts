/**
 * Another process holding the s390-tools AP configuration lock, as chzdev or mdevctl's ap-check do: a
 * shell that writes its pid and a newline to a temporary file, link(2)s it to the lock path (`ln` without
 * -f fails if the lock exists), and on SIGTERM unlinks the lock and exits. Killed at teardown.
 */
import { spawn } from 'node:child_process'
import fs from 'node:fs'

const SCRIPT = `
lock="$1"; tmp="$lock.holder.$$"
echo $$ > "$tmp"
while ! ln "$tmp" "$lock" 2>/dev/null; do sleep 0.02; done
rm -f "$tmp"
trap 'rm -f "$lock"; exit 0' TERM
echo held
while :; do sleep 0.02; done
`

interface Teardown {
  teardown(fn: () => unknown): void
}

/** The holder: its pid (the one in the lock), and release() = SIGTERM to it, resolved once it exited. */
export interface LockHolder {
  pid: number
  release(): Promise<void>
}

/** Starts the holder and resolves once it holds `lockPath`. */
export async function holdLockInOtherProcess(t: Teardown, lockPath: string): Promise<LockHolder> {
  const p = spawn('sh', ['-c', SCRIPT, 'holder', lockPath], { stdio: ['ignore', 'pipe', 'inherit'] })
  const exited = new Promise<void>((r) => p.once('exit', () => r()))
  t.teardown(async () => {
    if (p.exitCode === null && p.signalCode === null) {
      p.kill('SIGKILL')
      await exited
    }
  })
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the lock holder did not take the lock within 10 s')), 10_000)
    p.stdout!.on('data', (d: Buffer) => {
      if (d.toString().includes('held')) {
        clearTimeout(timer)
        resolve()
      }
    })
    p.once('exit', () => reject(new Error('the lock holder exited early')))
  })
  if (fs.readFileSync(lockPath, 'utf8') !== `${p.pid}\n`) throw new Error('the lock holder wrote something other than its pid')
  return {
    pid: p.pid!,
    release: async () => {
      p.kill('SIGTERM')
      await exited
    },
  }
}
