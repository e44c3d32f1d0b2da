/**
 * What an emulator's write log (the `WriteLog` RPC) says about who drove its host: the check of the
 * replicas test that no two lease holders drove one host at once (docs/api.md (Reconcile)).
 */
import type { WriteLogEntry } from '../../src/hostbus/client.js'

/** The writes of one lease (one fencing token). */
export interface TokenRun {
  token: number
  holder: string
  count: number
  firstSeq: number
  lastSeq: number
  firstWallMs: number
  lastWallMs: number
}

/** The verdict on one host's write log. */
export interface FenceReport {
  /** Writes that passed the fence check (whatever the kernel answered), in log order, grouped by token. */
  runs: TokenRun[]
  /** Writes the emulator refused as stale: a second replica tried to drive the host. */
  refused: WriteLogEntry[]
  /** Writes without a fence. */
  unfenced: WriteLogEntry[]
  /** Broken rules, one sentence each (empty when the log is clean). */
  violations: string[]
}

/**
 * Checks `entries` (oldest first, as the emulator of `host` logged them):
 * - every fenced write names `host`;
 * - the tokens of writes that passed the fence never go backwards;
 * - one token belongs to one holder;
 * - the writes of one token form one contiguous run: all writes of token N precede all of token N+1,
 *   so no two holders' writes interleave;
 * - a refused write was really stale: a newer token (or the same token of another holder) had passed before it.
 * Refused and unfenced writes are also returned: the caller decides whether any are allowed.
 */
export function checkFencedLog(host: string, entries: WriteLogEntry[]): FenceReport {
  const runs: TokenRun[] = []
  const refused: WriteLogEntry[] = []
  const unfenced: WriteLogEntry[] = []
  const violations: string[] = []
  const holderOf = new Map<number, string>()
  const closed = new Set<number>()
  for (const e of entries) {
    if (!e.fence) {
      unfenced.push(e)
      continue
    }
    if (e.fence.host !== host) violations.push(`write #${e.seq} to ${e.path} is fenced for host ${e.fence.host}, not ${host}`)
    if (e.fenceRefused) {
      refused.push(e)
      const top = runs.reduce<TokenRun | undefined>((m, r) => (!m || r.token > m.token ? r : m), undefined)
      if (!top || !(e.fence.token < top.token || (e.fence.token === top.token && e.fence.holder !== top.holder))) {
        violations.push(
          `write #${e.seq} of ${e.fence.holder} with token ${e.fence.token} was refused, yet no newer token had written (${top ? `newest: ${top.token} of ${top.holder}` : 'none'})`,
        )
      }
      continue
    }
    const { token, holder } = e.fence
    const owner = holderOf.get(token)
    if (owner !== undefined && owner !== holder) violations.push(`token ${token} was used by two holders: ${owner} and ${holder} (write #${e.seq})`)
    holderOf.set(token, owner ?? holder)
    const cur = runs.at(-1)
    if (cur && cur.token === token) {
      cur.count++
      cur.lastSeq = e.seq
      cur.lastWallMs = e.wallTimeMs
      continue
    }
    if (cur && token < cur.token)
      violations.push(`token went backwards: write #${e.seq} by ${holder} with token ${token} after token ${cur.token} of ${cur.holder}`)
    if (closed.has(token)) violations.push(`writes of token ${token} (${holder}) interleave with another token's: write #${e.seq} resumes it`)
    if (cur) closed.add(cur.token)
    runs.push({ token, holder, count: 1, firstSeq: e.seq, lastSeq: e.seq, firstWallMs: e.wallTimeMs, lastWallMs: e.wallTimeMs })
  }
  return { runs, refused, unfenced, violations }
}

/** One line per run, for test comments: `token 3 replica-1: 7 writes`. */
export function describeRuns(runs: TokenRun[]): string {
  return runs.map((r) => `token ${r.token} ${r.holder}: ${r.count} writes`).join('; ') || 'no fenced write'
}
