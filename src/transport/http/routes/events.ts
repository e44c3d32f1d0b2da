/**
 * `GET /v1/events`: the event log as server-sent events (docs/api.md (REST), issue 4 §2), over the
 * service's watch (replay, then live; no gap, no duplicate; the same filters and views as gRPC's
 * `Watch`). `curl -N` works.
 *
 * Each event is one SSE message: `id: <seq>`, `event: <type>`, `data: <the event as JSON>`.
 * Position: `Last-Event-ID` (what an EventSource sends when it reconnects, with the URL it first used)
 * wins over `?since=`; `since=0` replays every event the log keeps; with neither, only events stored from
 * now on. A position below what retention kept is refused with 410 GONE (problem+json with `oldestSeq`).
 * Filters: `host`, `kind` and `type` (each repeatable or a comma list). `format=libvirt` sends only the
 * events that have a libvirt node-device lifecycle name (events/libvirt-lifecycle.ts), named by it.
 * `bookmarks=<seconds>`: a `Bookmark` message (`id: <position>`, no event) that often, so an idle client's
 * Last-Event-ID keeps up with the log. A `: ping` comment every `heartbeatMs` keeps proxies from closing an idle
 * stream. When the stream cannot go on (the client fell too far behind, the server shuts down, the store
 * failed), a last `event: error` carries `{code, detail, resumeSeq}` and the stream ends: reconnect with
 * `since=<resumeSeq>`; when retention overtook the stream it carries `{code: GONE, detail, oldestSeq}` and no
 * resumeSeq: re-list. A client that goes away is unsubscribed at once.
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { ApmatrixError, invalidArgument } from '../../../domain/errors.js'
import { HOST_NAME_PATTERN } from '../../../domain/names.js'
import { clip } from '../../../domain/text.js'
import {
  type ApmatrixService,
  BOOKMARK_TYPE,
  HubClosedError,
  MAX_BOOKMARK_SECONDS,
  MAX_WATCH_NAMES,
  SubscriptionLagError,
  type Watch,
  type WatchedEvent,
  WATCH_FORMATS,
} from '../../../service/index.js'
import { drainedOrEnded } from '../../stream-drain.js'
import * as S from '../schemas.js'

/** Options of {@link eventRoutes}. */
export interface EventRoutesOptions {
  service: ApmatrixService
  /** Period of the `: ping` comment (default 15 s). */
  heartbeatMs?: number
}

/** Default heartbeat period: below the 30 to 60 s idle timeouts of common proxies. */
export const SSE_HEARTBEAT_MS = 15_000
/** The reconnect delay an EventSource should use (the SSE `retry:` field). */
const RETRY_MS = 2000
const SEQ = /^[0-9]{1,16}$/

const NameList = Type.Union([Type.String({ maxLength: 2048 }), Type.Array(Type.String({ maxLength: 2048 }), { maxItems: MAX_WATCH_NAMES })])
const EventsQuery = Type.Object(
  {
    since: Type.Optional(
      Type.String({ maxLength: 16, description: 'deliver events with seq > since (0 = every event kept); Last-Event-ID wins; below the oldest kept: 410' }),
    ),
    host: Type.Optional(Type.String({ minLength: 1, maxLength: 63, pattern: HOST_NAME_PATTERN })),
    kind: Type.Optional(NameList),
    type: Type.Optional(NameList),
    format: Type.Optional(Type.Union(WATCH_FORMATS.map((f) => Type.Literal(f)))),
    bookmarks: Type.Optional(
      Type.String({ maxLength: 8, description: `a Bookmark event (the position, no event) every this many seconds, 1..${MAX_BOOKMARK_SECONDS}` }),
    ),
  },
  { additionalProperties: false },
)
const EventsHeaders = Type.Object({ 'last-event-id': Type.Optional(Type.String({ maxLength: 64, description: 'the last seq received; wins over since' })) })

/** The JSON of an event on the stream (the same fields as gRPC's Event, camelCase). */
export function eventJson(e: WatchedEvent['event']): Record<string, unknown> {
  return {
    seq: e.seq,
    time: e.time.toISOString(),
    host: e.host,
    kind: e.kind,
    name: e.name,
    type: e.type,
    message: e.message,
    requestId: e.requestId,
    actor: e.actor,
    data: e.data,
  }
}

export const eventRoutes: FastifyPluginAsyncTypebox<EventRoutesOptions> = async (app, { service, heartbeatMs = SSE_HEARTBEAT_MS }) => {
  /** Ends every open stream (server shutdown): fastify's close would otherwise wait for them forever. */
  const open = new Set<(err: Error) => void>()
  app.addHook('preClose', async () => {
    for (const end of [...open]) end(new HubClosedError(0))
  })

  app.get(
    '/events',
    {
      schema: {
        tags: ['events'],
        summary: 'Server-sent events: id = seq, event = type, data = the event (resume with Last-Event-ID or since)',
        querystring: EventsQuery,
        headers: EventsHeaders,
        response: S.responses({ 200: { type: 'string', description: 'text/event-stream' } as never }),
      },
    },
    async (req, reply) => {
      const lastEventId = req.headers['last-event-id']
      // An empty Last-Event-ID means "no id seen yet" (the SSE spec's reset), as if it were absent.
      const resumeAfter = parseSeq(typeof lastEventId === 'string' && lastEventId.trim() !== '' ? lastEventId : undefined, 'Last-Event-ID')
      // Both are checked, even when Last-Event-ID wins.
      const since = parseSeq(req.query.since, 'since')
      const sinceSeq = resumeAfter ?? since
      const kinds = nameList(req.query.kind)
      const types = nameList(req.query.type)
      const bookmarkSeconds = req.query.bookmarks === undefined ? undefined : parseSeconds(req.query.bookmarks)

      let done = false
      let watch: Watch | null = null
      const res = reply.raw
      // The pump may deliver before the watch's promise settles here: nothing is written before the headers.
      let headersOut!: () => void
      const opened = new Promise<void>((resolve) => {
        headersOut = resolve
      })
      const finish = () => {
        if (done) return
        done = true
        clearInterval(ping)
        open.delete(fail)
        watch?.close()
        headersOut()
      }
      const fail = (err: Error) => {
        void opened.then(() => {
          if (done) return
          finish()
          if (res.writableEnded || res.destroyed) return
          res.end(frame('error', JSON.stringify(errorJson(err, watch?.position ?? sinceSeq ?? 0, req.id))))
        })
      }
      const send = async (text: string) => {
        await opened
        if (done) return
        // Backpressure: a full socket buffer holds this subscriber's next event; the hub keeps the others going.
        if (!res.write(text)) await drainedOrEnded(res)
      }
      let ping: NodeJS.Timeout | undefined
      // Opened before the headers go out, so a refused watch (bad filter, no hub, a compacted position) is a plain
      // problem answer.
      watch = await service.watch(
        {
          ...(sinceSeq !== undefined ? { sinceSeq } : {}),
          ...(req.query.host ? { host: req.query.host } : {}),
          ...(kinds ? { kinds } : {}),
          ...(types ? { types } : {}),
          ...(req.query.format ? { format: req.query.format } : {}),
          ...(bookmarkSeconds !== undefined ? { bookmarkSeconds } : {}),
          principal: req.principal,
        },
        ({ event: e, libvirt: lv }) =>
          send(
            lv
              ? frame(lv.lifecycle, JSON.stringify({ ...eventJson(e), lifecycle: lv.lifecycle, device: lv.device }), e.seq)
              : frame(e.type, JSON.stringify(eventJson(e)), e.seq),
          ),
        (err) => fail(err),
        // A bookmark carries the position as its id, so an EventSource resumes from it.
        (seq) => send(frame(BOOKMARK_TYPE, JSON.stringify({ seq, type: BOOKMARK_TYPE }), seq)),
      )

      reply.hijack()
      res.writeHead(200, {
        ...(reply.getHeaders() as Record<string, string>),
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-cache, no-transform',
        connection: 'keep-alive',
        // nginx and similar proxies buffer responses unless told not to.
        'x-accel-buffering': 'no',
      })
      // HEAD (fastify adds it for every GET): the headers, and no stream that nobody reads.
      if (req.method === 'HEAD') {
        finish()
        res.end()
        return
      }
      // Something at once, so clients (and curl -N) see the stream open before the first event.
      res.write(`retry: ${RETRY_MS}\n: apmatrix events${sinceSeq !== undefined ? ` after seq ${sinceSeq}` : ' from now'}\n\n`)
      ping = setInterval(() => {
        if (!done && !res.destroyed) res.write(': ping\n\n')
      }, heartbeatMs)
      ping.unref()
      open.add(fail)
      // 'close' on the response: the client went away (or we ended it); it may have gone while the watch opened.
      res.on('close', finish)
      res.on('error', finish)
      if (res.destroyed || req.raw.socket.destroyed) finish()
      headersOut()
    },
  )
}

/** One SSE message. Names and ids never contain newlines; JSON.stringify escapes those of the data. */
function frame(event: string, data: string, id?: number): string {
  return `${id !== undefined ? `id: ${id}\n` : ''}event: ${event}\ndata: ${data}\n\n`
}

function errorJson(err: Error, position: number, requestId: string): Record<string, unknown> {
  if (err instanceof SubscriptionLagError) return { code: 'RATE_LIMITED', detail: err.message, resumeSeq: err.resumeSeq, requestId }
  if (err instanceof HubClosedError)
    return { code: 'UNAVAILABLE', detail: 'server shutting down; resume from resumeSeq', resumeSeq: Math.max(err.resumeSeq, position), requestId }
  // Retention overtook the stream: no position resumes it without a hole; the client re-lists.
  if (err instanceof ApmatrixError && err.code === 'GONE') return { code: err.code, detail: clip(err.message, 512), oldestSeq: err.oldestSeq, requestId }
  const code = err instanceof ApmatrixError ? err.code : 'UNAVAILABLE'
  return { code, detail: clip(`event stream failed: ${err.message}`, 512), resumeSeq: position, requestId }
}

/** A seq from a query parameter or header; undefined when absent. INVALID_ARGUMENT when malformed. */
function parseSeq(v: string | undefined, field: string): number | undefined {
  if (v === undefined) return undefined
  const s = v.trim()
  const n = SEQ.test(s) ? Number(s) : NaN
  if (!Number.isSafeInteger(n)) throw invalidArgument(field, `must be a non-negative integer (an event seq), not ${JSON.stringify(clip(v, 32))}`)
  return n
}

/** `bookmarks=<seconds>`; the service checks the range. INVALID_ARGUMENT when not a whole number. */
function parseSeconds(v: string): number {
  const s = v.trim()
  if (!/^[0-9]{1,7}$/.test(s)) throw invalidArgument('bookmarks', `must be a whole number of seconds, not ${JSON.stringify(clip(v, 32))}`)
  return Number(s)
}

/** A repeatable, comma-separated filter as a list of names (the service checks them), or undefined for none. */
function nameList(v: string | string[] | undefined): string[] | undefined {
  if (v === undefined) return undefined
  const names = (Array.isArray(v) ? v : [v])
    .flatMap((x) => x.split(','))
    .map((x) => x.trim())
    .filter((x) => x !== '')
  return names.length ? names : undefined
}
