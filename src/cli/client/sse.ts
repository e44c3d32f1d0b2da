/**
 * A reader of `text/event-stream` bodies (the WHATWG server-sent events format, as `GET /v1/events`
 * sends it: `id:`, `event:`, `data:` lines, a blank line ends a message, `:` lines are comments).
 */

/** One message of the stream. */
export interface SseMessage {
  id: string | undefined
  event: string
  data: string
}

/** The messages of `body` in order; ends when the body ends. Comments and `retry:` are skipped. */
export async function* readSse(body: ReadableStream<Uint8Array>): AsyncGenerator<SseMessage> {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader()
  let buf = ''
  let id: string | undefined
  let event = ''
  let data: string[] = []
  try {
    for (;;) {
      const { value, done } = await reader.read()
      if (done) return
      buf += value
      let nl: number
      while ((nl = buf.search(/\r\n|\r|\n/)) >= 0) {
        // A lone CR at the end may be the first half of a CRLF split across chunks.
        if (buf[nl] === '\r' && nl === buf.length - 1) break
        const line = buf.slice(0, nl)
        buf = buf.slice(nl + (buf.startsWith('\r\n', nl) ? 2 : 1))
        if (line === '') {
          if (data.length) yield { id, event: event || 'message', data: data.join('\n') }
          event = ''
          data = []
          continue
        }
        if (line.startsWith(':')) continue
        const colon = line.indexOf(':')
        const field = colon < 0 ? line : line.slice(0, colon)
        const val = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '')
        if (field === 'data') data.push(val)
        else if (field === 'event') event = val
        else if (field === 'id') id = val
      }
    }
  } finally {
    await reader.cancel().catch(() => undefined)
  }
}
