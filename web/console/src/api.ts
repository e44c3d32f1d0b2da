/**
 * The console's only way to the server: the public REST API with an optional bearer token (kept in
 * sessionStorage, sent as `Authorization: Bearer`), and the event stream read with fetch streaming (an
 * EventSource cannot send that header).
 */
import type { ApEvent, Problem } from './api-types.js'

const TOKEN_KEY = 'apmatrix.token'

/** The bearer token of this tab, or ''. */
export function getToken(): string {
  try {
    return sessionStorage.getItem(TOKEN_KEY) ?? ''
  } catch {
    return ''
  }
}

/** Keeps (or with '' forgets) the bearer token for this tab only. */
export function setToken(token: string): void {
  try {
    if (token) sessionStorage.setItem(TOKEN_KEY, token)
    else sessionStorage.removeItem(TOKEN_KEY)
  } catch {
    // storage disabled: the token lasts until the page is closed
  }
  memoryToken = token
}

let memoryToken = getToken()

function headers(extra: Record<string, string> = {}): Record<string, string> {
  const h: Record<string, string> = { accept: 'application/json', ...extra }
  if (memoryToken) h.authorization = `Bearer ${memoryToken}`
  return h
}

/** A refused request: the HTTP status and the problem body the server sent. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly problem: Problem,
  ) {
    super(problem.detail ?? `${status} ${problem.title}`)
  }
}

/** One JSON request; resolves to the body and the ETag, rejects with {@link ApiError}. */
export async function call<T>(method: string, path: string, body?: unknown, extra: Record<string, string> = {}): Promise<{ body: T; etag: string | null }> {
  const init: RequestInit = { method, headers: headers(body === undefined ? extra : { 'content-type': 'application/json', ...extra }) }
  if (body !== undefined) init.body = JSON.stringify(body)
  const res = await fetch(path, init)
  const text = await res.text()
  let parsed: unknown = null
  try {
    parsed = text ? JSON.parse(text) : null
  } catch {
    parsed = { status: res.status, title: res.statusText, detail: text.slice(0, 200) }
  }
  if (!res.ok) throw new ApiError(res.status, (parsed as Problem) ?? { status: res.status, title: res.statusText })
  return { body: parsed as T, etag: res.headers.get('etag') }
}

/** GET of a JSON answer. */
export async function get<T>(path: string): Promise<T> {
  return (await call<T>('GET', path)).body
}

/** Every item of a paged list (`limit` 500, following `nextPageToken`). */
export async function getAll<T>(path: string): Promise<T[]> {
  const out: T[] = []
  let token: string | undefined
  const sep = path.includes('?') ? '&' : '?'
  do {
    const page = await get<{ items: T[]; nextPageToken?: string }>(`${path}${sep}limit=500${token ? `&pageToken=${encodeURIComponent(token)}` : ''}`)
    out.push(...page.items)
    token = page.nextPageToken
  } while (token)
  return out
}

/** State of the event stream, as the header shows it. */
export type StreamState = 'connecting' | 'live' | 'lost'

/** Options of {@link followEvents}. */
export interface FollowOptions {
  host: string
  onEvent(e: ApEvent): void
  onState(s: StreamState, detail: string): void
  /** Called when the stream (re)opened; `resumed` true when it resumed from a known position. */
  onOpen(resumed: boolean): void
  /** Delay before a reconnection (default: the server's `retry`, 2 s). */
  retryMs?: number
}

/**
 * Follows `GET /v1/events?host=` from now on. After a lost connection it reconnects with
 * `since=<last seq seen>`, so the events in between are delivered (the server sends them in seq order with no
 * gap); the final `event: error` of a stream the server ends gives `resumeSeq`. When retention no longer keeps
 * the events after that position (410, or a final error `GONE`), it reconnects from now instead: `onOpen(false)`,
 * and the caller reads everything again. Returns a stop function.
 */
export function followEvents(opts: FollowOptions): { stop(): void; lastSeq(): number } {
  let stopped = false
  let last = -1
  let ctrl: AbortController | undefined
  let retry = opts.retryMs ?? 2000
  const run = async () => {
    while (!stopped) {
      ctrl = new AbortController()
      const resumed = last >= 0
      opts.onState('connecting', resumed ? `resuming after event ${last}` : 'opening the event stream')
      try {
        const q = new URLSearchParams({ host: opts.host })
        if (resumed) q.set('since', String(last))
        const res = await fetch(`/v1/events?${q}`, { headers: headers({ accept: 'text/event-stream' }), signal: ctrl.signal, cache: 'no-store' })
        // 410 GONE: retention removed events after `last`; follow from now, and the (re)open reads everything again.
        if (res.status === 410) last = -1
        if (!res.ok || !res.body) throw new Error(`event stream: HTTP ${res.status}`)
        opts.onState('live', resumed ? `resumed after event ${last}` : 'following events')
        opts.onOpen(resumed)
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader()
        let buf = ''
        let ev: { id?: string; event?: string; data: string[] } = { data: [] }
        for (;;) {
          const { value, done } = await reader.read()
          if (done) break
          buf += value
          let nl: number
          while ((nl = buf.indexOf('\n')) >= 0) {
            const line = buf.slice(0, nl).replace(/\r$/, '')
            buf = buf.slice(nl + 1)
            if (line === '') {
              if (ev.data.length) dispatch(ev)
              ev = { data: [] }
              continue
            }
            if (line.startsWith(':')) continue
            const c = line.indexOf(':')
            const field = c < 0 ? line : line.slice(0, c)
            const val = c < 0 ? '' : line.slice(c + 1).replace(/^ /, '')
            if (field === 'data') ev.data.push(val)
            else if (field === 'id') ev.id = val
            else if (field === 'event') ev.event = val
            else if (field === 'retry' && /^\d+$/.test(val)) retry = opts.retryMs ?? Number(val)
          }
        }
        if (!stopped) opts.onState('lost', 'the server closed the event stream')
      } catch (e) {
        if (stopped) return
        opts.onState('lost', `connection lost: ${(e as Error).message}`)
      }
      await new Promise((r) => setTimeout(r, retry))
    }
  }
  const dispatch = (ev: { id?: string; event?: string; data: string[] }) => {
    let data: unknown
    try {
      data = JSON.parse(ev.data.join('\n'))
    } catch {
      return
    }
    if (ev.event === 'error') {
      const { resumeSeq, code } = data as { resumeSeq?: number; code?: string }
      if (typeof resumeSeq === 'number') last = resumeSeq
      // Retention overtook the stream: no position resumes it; follow from now and read everything again.
      if (code === 'GONE') last = -1
      return
    }
    const e = data as ApEvent
    if (typeof e.seq === 'number') last = e.seq
    opts.onEvent(e)
  }
  void run()
  return {
    stop: () => {
      stopped = true
      ctrl?.abort()
    },
    lastSeq: () => last,
  }
}
