/**
 * `apmatrix events`: the event log (docs/api.md (Resources) Event) from `GET /v1/events` (server-sent events).
 * Without `--follow` it prints the events stored so far and exits; with `--follow` it keeps printing
 * and, when the stream ends (server restart, too slow a reader), reconnects from the last seq it printed,
 * so nothing is lost or printed twice.
 */
import { CLIENT_OPTIONS, clientOptionsHelp, clientContext } from '../args/client-options.js'
import { ApiError, UnreachableError } from '../client/api-error.js'
import type { ApiEvent } from '../client/api-types.js'
import { withClientErrors } from '../client/report-error.js'
import { readSse } from '../client/sse.js'
import { type CliCommand, type CliIo, EXIT, UsageError } from '../command.js'
import { clip } from '../../domain/text.js'

/**
 * Without --follow, the end of "the events so far" is a quiet stream: the server replays stored events
 * at once and sends no end-of-replay marker, so this long without a new event means caught up.
 */
export const CAUGHT_UP_IDLE_MS = 500
const RECONNECT_DELAY_MS = 1000
const MAX_RECONNECTS = 5

/** One event as a line of text (fixed columns: the stream cannot be measured in advance). */
export function formatEventLine(e: ApiEvent): string {
  const obj = `${e.kind}/${e.name}`
  return `${`${String(e.seq).padStart(6)}  ${e.time}  ${e.host.padEnd(8)}  ${e.type.padEnd(16)}  ${obj.padEnd(20)}  ${e.message ?? ''}`.trimEnd()}\n`
}

const HEADER = `${'SEQ'.padStart(6)}  ${'TIME'.padEnd(24)}  ${'HOST'.padEnd(8)}  ${'TYPE'.padEnd(16)}  ${'OBJECT'.padEnd(20)}  MESSAGE\n`

/** Why a stream stopped: caught up (non-follow), the caller's limit, or the stream ended / failed. */
type StreamEnd = { kind: 'idle' } | { kind: 'limit' } | { kind: 'ended' } | { kind: 'error'; code: string; detail: string; resumeSeq?: number }

/** The `events` verb. */
export const eventsCommand: CliCommand = {
  path: ['events'],
  summary: 'print the event log; --follow streams new events (resumable)',
  help: `Usage: apmatrix events [--follow] [--since SEQ] [--host NAME] [--kind K]... [--type T]... [--json]

Prints events (seq, time, host, type, object, message) from the server's event log. Without --follow:
the events stored so far (all of them, or those after --since), then exits. With --follow: only new
events (or those after --since), until interrupted or --max-events; a dropped stream is resumed from the
last seq printed. --json prints one JSON object per line (NDJSON), for scripts and jq.

Options:
  -f, --follow        keep streaming new events
  --since SEQ         only events with a seq greater than SEQ (0: the whole log)
  --host NAME         only events of this host (default: every host)
  --kind K            only events about this kind of object: mdev, masks, queue, host (repeatable)
  --type T            only events of this type: MdevDefined, MasksChanged, DriftDetected... (repeatable)
  --max-events N      exit after N events
${clientOptionsHelp({ host: false, timeout: 'how long connecting may take (default 30s)' })}
`,
  options: {
    ...CLIENT_OPTIONS,
    follow: { type: 'boolean', short: 'f' },
    since: { type: 'string' },
    kind: { type: 'string', multiple: true },
    type: { type: 'string', multiple: true },
    'max-events': { type: 'string' },
  },
  run: (args, io) =>
    withClientErrors(io, async () => {
      const ctx = clientContext(args, io)
      const follow = args.values.follow === true
      const sinceArg = args.values.since as string | undefined
      if (sinceArg !== undefined && !/^\d{1,15}$/.test(sinceArg)) throw new UsageError(`--since: '${clip(sinceArg, 20)}' is not an event seq (0 or more)`)
      const maxArg = args.values['max-events'] as string | undefined
      if (maxArg !== undefined && !/^[1-9]\d{0,8}$/.test(maxArg)) throw new UsageError(`--max-events: '${clip(maxArg, 20)}' is not a positive number`)
      const max = maxArg === undefined ? Infinity : Number(maxArg)
      const host = typeof args.values.host === 'string' ? args.values.host : undefined
      const kinds = (args.values.kind as string[] | undefined)?.join(',')
      const types = (args.values.type as string[] | undefined)?.join(',')
      // Without --follow the default is the whole log; with it, events from now on.
      let since: number | undefined = sinceArg !== undefined ? Number(sinceArg) : follow ? undefined : 0
      let printed = 0
      let reconnects = 0
      let header = !ctx.json
      const opened = () => {
        if (header) io.stdout.write(HEADER)
        header = false
      }
      for (;;) {
        let end: StreamEnd
        try {
          end = await streamOnce(io, ctx, { since, host, kinds, types, follow, json: ctx.json, left: max - printed, opened }, (e) => {
            since = e.seq
            printed++
            reconnects = 0
          })
        } catch (e) {
          if (!follow || !(e instanceof UnreachableError || (e instanceof ApiError && e.status === 503)) || ++reconnects > MAX_RECONNECTS) throw e
          io.stderr.write(`apmatrix: ${e.message}; retrying in ${RECONNECT_DELAY_MS / 1000}s\n`)
          await delay(RECONNECT_DELAY_MS)
          continue
        }
        if (end.kind === 'idle' || end.kind === 'limit') return EXIT.OK
        const why = end.kind === 'error' ? `${end.detail} [${end.code}]` : 'the server ended the stream'
        if (end.kind === 'error' && end.resumeSeq !== undefined) since = Math.max(since ?? 0, end.resumeSeq)
        // Retention overtook the stream: no position resumes it without a hole (the detail says how to re-list).
        if (!follow || (end.kind === 'error' && end.code === 'GONE')) {
          io.stderr.write(`apmatrix: ${why}\n`)
          return end.kind === 'error' && end.code !== 'UNAVAILABLE' ? EXIT.FAILURE : EXIT.UNAVAILABLE
        }
        if (++reconnects > MAX_RECONNECTS) {
          io.stderr.write(`apmatrix: ${why}; giving up after ${MAX_RECONNECTS} reconnects\n`)
          return EXIT.UNAVAILABLE
        }
        io.stderr.write(`apmatrix: ${why}; resuming after seq ${since ?? 'now'}\n`)
        await delay(RECONNECT_DELAY_MS)
      }
    }),
}

interface StreamOptions {
  since: number | undefined
  host: string | undefined
  kinds: string | undefined
  types: string | undefined
  follow: boolean
  json: boolean
  left: number
  /** Called once the server accepted the stream. */
  opened: () => void
}

async function streamOnce(io: CliIo, ctx: ReturnType<typeof clientContext>, o: StreamOptions, seen: (e: ApiEvent) => void): Promise<StreamEnd> {
  const ac = new AbortController()
  const res = await ctx.client.stream('/v1/events', { since: o.since, host: o.host, kind: o.kinds, type: o.types }, ac.signal)
  o.opened()
  if (!res.body) return { kind: 'ended' }
  const it = readSse(res.body)[Symbol.asyncIterator]()
  let left = o.left
  try {
    for (;;) {
      const next = it.next()
      // Once the stream is aborted the pending read rejects; that is the expected end, not an error.
      next.catch(() => undefined)
      let timer: NodeJS.Timeout | undefined
      const r = o.follow
        ? await next
        : await Promise.race([next, new Promise<'idle'>((resolve) => (timer = setTimeout(() => resolve('idle'), CAUGHT_UP_IDLE_MS)))])
      clearTimeout(timer)
      if (r === 'idle') return { kind: 'idle' }
      if (r.done) return { kind: 'ended' }
      const msg = r.value
      if (msg.event === 'error') {
        const err = JSON.parse(msg.data) as { code?: string; detail?: string; resumeSeq?: number }
        return {
          kind: 'error',
          code: err.code ?? 'UNAVAILABLE',
          detail: err.detail ?? 'event stream failed',
          ...(typeof err.resumeSeq === 'number' ? { resumeSeq: err.resumeSeq } : {}),
        }
      }
      const e = JSON.parse(msg.data) as ApiEvent
      io.stdout.write(o.json ? `${JSON.stringify(e)}\n` : formatEventLine(e))
      seen(e)
      if (--left <= 0) return { kind: 'limit' }
    }
  } catch (e) {
    // The body failing mid-stream (server gone) is the stream ending; follow mode reconnects.
    if ((e as Error).name === 'AbortError' || (e as Error).name === 'TypeError') return { kind: 'ended' }
    throw e
  } finally {
    ac.abort()
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms))
}
