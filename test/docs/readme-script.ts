/**
 * The README's shell blocks as scripts, for the README tests (readme.test.ts runs the walk-through,
 * readme-fuse.test.ts the FUSE section): every fenced `sh` block with the marker comment on the line before
 * it, and a runner that runs a script with bash in the checkout, in its own process group, and says how long
 * each README block took (printed by the tests, so a slow or stuck block is named in the log).
 */
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import type { Test } from 'tap'
import { projectRoot } from '../../src/paths.js'

export const README = fs.readFileSync(path.join(projectRoot, 'README.md'), 'utf8')
export const WALKTHROUGH = 'walkthrough'
export const FUSE = 'walkthrough: fuse'
export const NOT_RUN = /^not run by the README test: \S/

/** A fenced shell block of the README with its marker and the line it starts on. */
export interface Block {
  marker: string | undefined
  code: string
  line: number
}

function shellBlocks(text: string): Block[] {
  const lines = text.split('\n')
  const blocks: Block[] = []
  for (let i = 0; i < lines.length; i++) {
    if (!lines[i]!.startsWith('```')) continue
    const end = lines.indexOf('```', i + 1)
    if (end < 0) throw new Error(`README.md:${i + 1}: unterminated fence`)
    let j = i - 1
    while (j >= 0 && lines[j]!.trim() === '') j--
    const marker = /^<!-- (.+) -->$/.exec(lines[j] ?? '')?.[1]
    blocks.push({ marker, code: lines.slice(i + 1, end).join('\n'), line: i + 1 })
    if (lines[i] !== '```sh') throw new Error(`README.md:${i + 1}: a fence that is not \`\`\`sh (${lines[i]})`)
    i = end
  }
  return blocks
}

export const blocks = shellBlocks(README)
/**
 * The blocks of `marker` in order as one script. Before each block a line of the test's own (not the
 * README's) appends the block's line and the time to $README_TIMES, for {@link blockTimes}.
 */
export const script = (marker: string) =>
  blocks
    .filter((b) => b.marker === marker)
    .map((b) => `echo "${b.line} $(date +%s%3N)" >> "$README_TIMES"\n# README.md:${b.line}\n${b.code}`)
    .join('\n\n')

/** What a script run gave: exit code (null when killed), output, and the README blocks it reached with their durations. */
export interface ScriptResult {
  code: number | null
  stdout: string
  stderr: string
  timedOut: boolean
  /** `README.md:LINE Nms` per block started, the last one up to the end of the run. */
  blocks: string[]
}

function blockTimes(file: string, end: number): string[] {
  const rows = fs.existsSync(file)
    ? fs
        .readFileSync(file, 'utf8')
        .trim()
        .split('\n')
        .map((l) => l.split(' ').map(Number) as [number, number])
    : []
  return rows.map(([line, at], i) => `README.md:${line} ${(rows[i + 1]?.[1] ?? end) - at}ms`)
}

/** Runs `text` with bash in the checkout, in its own process group (killed at teardown if still running). */
export function runBash(t: Test, text: string, env: NodeJS.ProcessEnv, timeoutMs: number) {
  const times = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'apmatrix-readme-times-')), 'times')
  t.teardown(() => fs.rmSync(path.dirname(times), { recursive: true, force: true }))
  // --norc: bash reads ~/.bashrc when its stdin is a socket (as from spawn), as if started by sshd.
  const p = spawn('bash', ['--norc', '--noprofile', '-c', `set -euo pipefail\n${text}`], {
    cwd: projectRoot,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/root', LANG: 'C.UTF-8', README_TIMES: times, ...env },
  })
  let stdout = ''
  let stderr = ''
  p.stdout.on('data', (d) => (stdout += d))
  p.stderr.on('data', (d) => (stderr += d))
  let timedOut = false
  const timer = setTimeout(() => {
    timedOut = true
    process.kill(-p.pid!, 'SIGKILL')
  }, timeoutMs)
  const done = new Promise<ScriptResult>((resolve) =>
    p.on('close', (code) => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr, timedOut, blocks: blockTimes(times, Date.now()) })
    }),
  )
  t.teardown(async () => {
    // The script's background children (servers) share its group: nothing outlives the test.
    try {
      process.kill(-p.pid!, 'SIGKILL')
    } catch {
      // already gone
    }
    await done
  })
  return done
}
