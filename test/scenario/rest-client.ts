/**
 * A tiny REST client for scenario and reliability tests: real HTTP over a socket (fetch), JSON in and
 * out, and bounded polling that fails with a message saying what it waited for and what it last saw.
 */

/** One HTTP answer: status, headers, body (parsed JSON when the type says so, else the text). */
export interface RestResponse {
  status: number
  headers: Headers
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  body: any
  text: string
}

/** Options of one call: a JSON body, a raw body, extra headers. */
export interface CallOptions {
  body?: unknown
  raw?: string
  headers?: Record<string, string>
}

/** `call(method, path)` against `base` (`http://127.0.0.1:PORT`). Rejects only when the connection fails. */
export type RestCall = (method: string, path: string, opts?: CallOptions) => Promise<RestResponse>

/** A client for the service listening at `base`. */
export function restClient(base: string): RestCall {
  return async (method, path, o = {}) => {
    const headers: Record<string, string> = { ...(o.headers ?? {}) }
    let body: string | undefined = o.raw
    if (o.body !== undefined) {
      body = JSON.stringify(o.body)
      headers['content-type'] ??= 'application/json'
    }
    const res = await fetch(base + path, { method, headers, body, signal: AbortSignal.timeout(15_000) })
    const text = await res.text()
    const type = res.headers.get('content-type') ?? ''
    return { status: res.status, headers: res.headers, text, body: type.includes('json') && text ? JSON.parse(text) : text }
  }
}

/**
 * Polls `probe` every `everyMs` until it returns something other than `undefined`/`false` and resolves
 * to that value. After `timeoutMs` it rejects with `what` and the last value `describe` made of the
 * probe's state (or the probe's last error), so a failing wait says why.
 */
export async function until<T>(
  what: string,
  probe: () => Promise<T | undefined | false>,
  opts: { timeoutMs?: number; everyMs?: number; describe?: () => unknown } = {},
): Promise<T> {
  const end = Date.now() + (opts.timeoutMs ?? 20_000)
  let lastError: unknown
  for (;;) {
    try {
      const v = await probe()
      if (v !== undefined && v !== false) return v
      lastError = undefined
    } catch (e) {
      lastError = e
    }
    if (Date.now() > end) {
      let seen: unknown = lastError instanceof Error ? `error: ${lastError.message}` : lastError
      if (opts.describe) seen = await Promise.resolve(opts.describe()).catch((e: unknown) => `describe failed: ${String(e)}`)
      throw new Error(`timed out after ${opts.timeoutMs ?? 20_000} ms waiting for ${what}; last seen: ${JSON.stringify(seen)?.slice(0, 2000)}`)
    }
    await new Promise((r) => setTimeout(r, opts.everyMs ?? 50))
  }
}

/** The condition `type` of a matrix device object from the API, or undefined. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export function condition(mdev: any, type: string): { type: string; status: string; reason: string; message: string; observedGeneration: number } | undefined {
  return mdev?.status?.conditions?.find((c: { type: string }) => c.type === type)
}

/**
 * True when a device object says it converged on its current spec: Ready=True for this generation
 * (status.observedGeneration and the Ready condition's observedGeneration both equal metadata.generation).
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export function isReady(mdev: any): boolean {
  const ready = condition(mdev, 'Ready')
  const gen = mdev?.metadata?.generation
  return ready?.status === 'True' && mdev.status.observedGeneration === gen && ready.observedGeneration === gen
}

/** The APQNs of the cross product `adapters x domains`, as the kernel prints them (`aa.dddd`, O-10), sorted. */
export function crossProduct(adapters: number[], domains: number[]): string[] {
  const out: string[] = []
  for (const a of [...adapters].sort((x, y) => x - y))
    for (const d of [...domains].sort((x, y) => x - y)) out.push(`${a.toString(16).padStart(2, '0')}.${d.toString(16).padStart(4, '0')}`)
  return out
}
