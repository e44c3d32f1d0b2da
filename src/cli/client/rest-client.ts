/**
 * A small client of the apmatrix REST API (docs/api.md (REST)) over the global `fetch`: JSON in and out, a
 * timeout on every request, problem+json errors as {@link ApiError}, network failures and timeouts as
 * {@link UnreachableError}. It holds no state besides its options, so one instance serves a whole verb.
 */
import { ApiError, type Problem, UnreachableError } from './api-error.js'
import { clip } from '../../domain/text.js'
import type { Agent } from 'undici'

/** Options of {@link RestClient}. */
export interface RestClientOptions {
  /** `http://host:port` of the server (a trailing slash is ignored). */
  server: string
  /** Per-request timeout in ms (connect + answer). */
  timeoutMs: number
  /** Sent as `Authorization: Bearer <token>` (a static token or a JWT; docs/security.md). */
  token?: string
  /** TLS: CA bundle to trust for the server, client certificate and key (PEM contents) for mutual TLS. */
  tls?: { ca?: Buffer; cert?: Buffer; key?: Buffer }
}

/** One request. */
export interface RequestOptions {
  query?: Record<string, string | number | boolean | undefined>
  body?: unknown
  headers?: Record<string, string>
  /** Overrides the client's timeout for this request (e.g. what is left of a wait deadline). */
  timeoutMs?: number
}

/** A successful answer: the status, the ETag without quotes (if any) and the parsed JSON body. */
export interface ApiResponse<T> {
  status: number
  etag: string | undefined
  body: T
}

/** The REST client. */
export class RestClient {
  readonly server: string
  readonly timeoutMs: number

  private readonly opts: RestClientOptions
  // undici's fetch with an agent that carries the TLS options (the global fetch cannot take them).
  private readonly fetch: (url: string, init: RequestInit) => Promise<Response>

  constructor(opts: RestClientOptions) {
    this.opts = opts
    this.server = opts.server.replace(/\/+$/, '')
    this.timeoutMs = opts.timeoutMs
    if (opts.tls && (opts.tls.ca || opts.tls.cert)) {
      const tls = opts.tls
      // undici loads only for a TLS call (a plain call uses the global fetch; --help loads neither).
      let dispatcher: Agent | undefined
      this.fetch = async (url, init) => {
        const undici = await import('undici')
        dispatcher ??= new undici.Agent({
          connect: {
            ...(tls.ca ? { ca: tls.ca } : {}),
            ...(tls.cert ? { cert: tls.cert } : {}),
            ...(tls.key ? { key: tls.key } : {}),
          },
        })
        return undici.fetch(url, { ...(init as object), dispatcher }) as unknown as Promise<Response>
      }
    } else {
      this.fetch = (url, init) => fetch(url, init)
    }
  }

  /** The same client with another per-request timeout. */
  withTimeout(timeoutMs: number): RestClient {
    return new RestClient({ ...this.opts, timeoutMs })
  }

  private auth(headers: Record<string, string>): Record<string, string> {
    return this.opts.token ? { ...headers, authorization: `Bearer ${this.opts.token}` } : headers
  }

  /** The absolute URL of an API path (`/v1/...`) with its query (undefined values left out). */
  url(path: string, query?: RequestOptions['query']): string {
    const u = new URL(this.server + path)
    for (const [k, v] of Object.entries(query ?? {})) if (v !== undefined) u.searchParams.set(k, String(v))
    return u.toString()
  }

  /** GET a JSON document. */
  get<T>(path: string, opts: RequestOptions = {}): Promise<ApiResponse<T>> {
    return this.request<T>('GET', path, opts)
  }

  /**
   * Sends one request and parses the JSON answer. Rejects with {@link ApiError} for a 4xx/5xx (the
   * problem body, or one made from the status when the body is not a problem) and with
   * {@link UnreachableError} when no answer arrives in time.
   */
  async request<T>(method: string, path: string, opts: RequestOptions = {}): Promise<ApiResponse<T>> {
    const url = this.url(path, opts.query)
    const timeoutMs = opts.timeoutMs ?? this.timeoutMs
    const headers: Record<string, string> = { accept: 'application/json, application/problem+json', ...opts.headers }
    let body: string | undefined
    if (opts.body !== undefined) {
      body = JSON.stringify(opts.body)
      headers['content-type'] ??= 'application/json'
    }
    let res: Response
    let text: string
    try {
      res = await this.fetch(url, { method, headers: this.auth(headers), body, signal: AbortSignal.timeout(timeoutMs) })
      text = await res.text()
    } catch (e) {
      throw unreachable(this.server, e, timeoutMs)
    }
    if (res.status >= 400) throw new ApiError(res.status, toProblem(res, text))
    const etag = res.headers.get('etag')?.replace(/^W\//, '').replace(/^"|"$/g, '') || undefined
    return { status: res.status, etag, body: (text ? JSON.parse(text) : undefined) as T }
  }

  /**
   * Opens a streaming GET (server-sent events). Only the connection and the headers are bounded by the
   * timeout: the body may stream for as long as the caller reads it. `signal` ends the stream.
   */
  async stream(path: string, query: RequestOptions['query'], signal: AbortSignal): Promise<Response> {
    const timeout = AbortSignal.timeout(this.timeoutMs)
    const connect = AbortSignal.any([signal, timeout])
    const ac = new AbortController()
    const onAbort = () => ac.abort(connect.reason)
    connect.addEventListener('abort', onAbort, { once: true })
    let res: Response
    try {
      res = await this.fetch(this.url(path, query), { headers: this.auth({ accept: 'text/event-stream' }), signal: ac.signal })
    } catch (e) {
      throw unreachable(this.server, e, this.timeoutMs)
    } finally {
      connect.removeEventListener('abort', onAbort)
    }
    // From here on only the caller's signal may end the body.
    signal.addEventListener('abort', () => ac.abort(signal.reason), { once: true })
    if (res.status >= 400) throw new ApiError(res.status, toProblem(res, await res.text().catch(() => '')))
    return res
  }
}

function toProblem(res: Response, text: string): Problem {
  try {
    const p = JSON.parse(text) as Partial<Problem>
    if (p && typeof p === 'object' && typeof p.code === 'string') {
      return { ...p, status: res.status, detail: typeof p.detail === 'string' ? p.detail : p.code, code: p.code } as Problem
    }
  } catch {
    // not JSON: a proxy or another server answered
  }
  const code = res.status === 404 ? 'NOT_FOUND' : res.status === 503 ? 'UNAVAILABLE' : `HTTP_${res.status}`
  const detail = `${res.status} ${res.statusText || 'error'}${text ? `: ${clip(text, 200).trim()}` : ''}`
  return { status: res.status, code, detail }
}

function unreachable(server: string, e: unknown, timeoutMs: number): UnreachableError {
  const err = e as { name?: string; message?: string; cause?: { code?: string; message?: string } }
  if (err?.name === 'TimeoutError' || err?.name === 'AbortError') {
    return new UnreachableError(`no answer from the apmatrix server at ${server} within ${formatMs(timeoutMs)}`)
  }
  const why = err?.cause?.code ?? err?.cause?.message ?? err?.message ?? String(e)
  return new UnreachableError(`cannot reach the apmatrix server at ${server} (${why})`)
}

function formatMs(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`
}
