/**
 * Sends the REST fuzz cases (test/reliability/openapi-cases.ts) to a service: well-formed HTTP through an undici
 * client (keep-alive, one request at a time, as a client library would), raw cases as bytes on a new
 * socket whose answers are parsed here (several answers when several requests were written).
 */
import net from 'node:net'
import { Client, type Dispatcher } from 'undici'
import type { RestCase } from './openapi-cases.js'

/** One HTTP answer. */
export interface Answer {
  status: number
  headers: Record<string, string>
  body: string
}

/** What a case got: its answers (none when the server closed the connection without one). */
export interface Outcome {
  answers: Answer[]
  /** Set when no answer came and the client gave up or the connection failed. */
  failure?: string
}

/** Answers are read up to this size; longer bodies are cut (answers are checked, not stored). */
const MAX_BODY = 4 * 1024 * 1024
/** A hang guard, not a speed limit: no fuzz request should take more than a few ms. */
const HANG_MS = 30_000

/** A sender bound to one service (`http://127.0.0.1:PORT`). */
export class HttpSender {
  private readonly client: Client
  private readonly port: number

  constructor(readonly origin: string) {
    this.client = new Client(origin, { headersTimeout: HANG_MS, bodyTimeout: HANG_MS, keepAliveTimeout: 10_000, pipelining: 1 })
    this.port = Number(new URL(origin).port)
  }

  async send(c: RestCase): Promise<Outcome> {
    return c.raw !== undefined ? this.sendRaw(c.raw, c.halfClose === true) : this.sendRequest(c)
  }

  private async sendRequest(c: RestCase): Promise<Outcome> {
    let res: Dispatcher.ResponseData
    try {
      res = await this.client.request({
        path: c.path,
        method: c.method as Dispatcher.HttpMethod,
        headers: c.headers,
        ...(c.body !== undefined ? { body: c.body } : {}),
      })
    } catch (e) {
      const err = e as Error & { code?: string }
      // The server closed the connection without an answer (it may, after a 431 or for a body it will not read).
      if (err.code === 'UND_ERR_SOCKET' || err.code === 'ECONNRESET' || err.code === 'EPIPE') return { answers: [], failure: `${err.code}` }
      throw new Error(`the HTTP client refused or failed the request (${err.code ?? err.name}: ${err.message}): fix the generator or the sender`)
    }
    const headers: Record<string, string> = {}
    for (const [k, v] of Object.entries(res.headers)) headers[k] = Array.isArray(v) ? v.join(', ') : String(v ?? '')
    let body = ''
    if ((headers['content-type'] ?? '').startsWith('text/event-stream')) {
      // Destroying the body aborts the request, which undici reports as an error of the stream.
      res.body.on('error', () => undefined)
      res.body.destroy()
    } else {
      try {
        for await (const chunk of res.body) {
          if (body.length < MAX_BODY) body += (chunk as Buffer).toString('utf8')
        }
      } catch (e) {
        return { answers: [{ status: res.statusCode, headers, body }], failure: `body: ${(e as Error).message}` }
      }
    }
    return { answers: [{ status: res.statusCode, headers, body }] }
  }

  private sendRaw(raw: string, halfClose: boolean): Promise<Outcome> {
    return new Promise((resolve) => {
      const sock = net.connect({ host: '127.0.0.1', port: this.port })
      const chunks: Buffer[] = []
      let size = 0
      let done = false
      const finish = (failure?: string) => {
        if (done) return
        done = true
        clearTimeout(timer)
        sock.destroy()
        const answers = parseAnswers(Buffer.concat(chunks).toString('latin1'))
        resolve(failure && answers.length === 0 ? { answers, failure } : { answers })
      }
      const timer = setTimeout(() => finish('no answer in time'), HANG_MS)
      sock.on('connect', () => {
        sock.write(Buffer.from(raw, 'latin1'))
        // A request the server would wait on (a body announced and not sent) ends here.
        if (halfClose) sock.end()
      })
      sock.on('data', (d: Buffer) => {
        if (size < MAX_BODY) chunks.push(d)
        size += d.length
        // An event stream never ends: its head is enough.
        if (Buffer.concat(chunks).toString('latin1').includes('text/event-stream')) finish()
      })
      sock.on('error', (e: NodeJS.ErrnoException) => finish(e.code ?? e.message))
      sock.on('close', () => finish())
    })
  }

  private closing: Promise<void> | undefined

  /** Closes the keep-alive connection (idempotent). */
  close(): Promise<void> {
    this.closing ??= this.client.close()
    return this.closing
  }
}

/** The answers in a byte stream (HTTP/1.1 responses back to back; bodies by content-length, chunked or to the end). */
export function parseAnswers(text: string): Answer[] {
  const out: Answer[] = []
  let rest = text
  while (rest.startsWith('HTTP/')) {
    const headEnd = rest.indexOf('\r\n\r\n')
    if (headEnd < 0) break
    const [line, ...lines] = rest.slice(0, headEnd).split('\r\n')
    const status = Number(/^HTTP\/\d\.\d (\d{3})/.exec(line!)?.[1] ?? NaN)
    const headers: Record<string, string> = {}
    for (const l of lines) {
      const i = l.indexOf(':')
      if (i > 0) headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim()
    }
    rest = rest.slice(headEnd + 4)
    let body = ''
    if (status === 100) {
      // An interim answer: the final one follows.
      continue
    } else if (headers['content-length'] !== undefined) {
      const n = Number(headers['content-length'])
      body = rest.slice(0, n)
      rest = rest.slice(n)
    } else if (/chunked/i.test(headers['transfer-encoding'] ?? '')) {
      for (;;) {
        const eol = rest.indexOf('\r\n')
        if (eol < 0) break
        const n = parseInt(rest.slice(0, eol), 16)
        if (!Number.isFinite(n)) break
        body += rest.slice(eol + 2, eol + 2 + n)
        rest = rest.slice(eol + 2 + n + 2)
        if (n === 0) break
      }
    } else {
      body = rest
      rest = ''
    }
    out.push({ status, headers, body: Buffer.from(body, 'latin1').toString('utf8') })
  }
  return out
}
