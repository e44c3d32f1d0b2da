/**
 * The C library's message for an errno name: what cat, bash and mdevctl print for it. Asked from the C
 * library itself (perl's `$!` is strerror), so tests compare with the machine's own texts.
 */
import { spawnSync } from 'node:child_process'
import os from 'node:os'

/** strerror() of the errno called `name` (e.g. EADDRINUSE -> "Address already in use"). Throws for an unknown name. */
export function strerror(name: string): string {
  const n = (os.constants.errno as Record<string, number>)[name]
  if (n === undefined) throw new Error(`unknown errno ${name}`)
  const r = spawnSync('perl', ['-e', '$! = shift; print "$!"', String(n)], { encoding: 'utf8' })
  if (r.status !== 0 || r.stdout === '') throw new Error(`perl strerror ${name}: ${r.stderr}`)
  return r.stdout
}
