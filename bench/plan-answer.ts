/**
 * `node dist/bench/plan-answer.js`: what a `POST plan` of the `full` bring-up (256 devices over 65,536
 * queues) costs a client, in each plan view: wall time of the call (planning + serialising + transfer)
 * and the size of the answer, each the median of a few runs. A figure, never a pass/fail check.
 */
import { benchUuid, callJson, startBenchService } from './service-helpers.js'

const RUNS = 5
const ALL_ONES = `0x${'f'.repeat(64)}`

async function main(): Promise<void> {
  const b = await startBenchService('full')
  try {
    const domains = Array.from({ length: 256 }, (_, d) => d)
    const doc = {
      owner: 'bench',
      masks: { apmask: '0x', aqmask: ALL_ONES },
      mdevs: Array.from({ length: 256 }, (_, a) => ({ uuid: benchUuid(9, a), spec: { adapters: [a], domains } })),
    }
    for (const [name, query] of [
      ['default (summary)', ''],
      ['view=full', '?view=full'],
    ] as const) {
      const times: number[] = []
      let bytes = 0
      let body: unknown
      for (let i = 0; i < RUNS; i++) {
        const t0 = performance.now()
        const r = await callJson(b.svc.httpUrl, 'POST', `/v1/hosts/local/plan${query}`, doc)
        times.push(performance.now() - t0)
        if (r.status !== 200) throw new Error(`POST plan${query}: HTTP ${r.status}`)
        bytes = r.bytes
        body = r.body
      }
      const t0 = performance.now()
      JSON.stringify(body)
      const stringifyMs = performance.now() - t0
      times.sort((x, y) => x - y)
      console.log(
        `POST plan ${name.padEnd(18)} median ${times[RUNS >> 1]!.toFixed(0).padStart(5)} ms (min ${times[0]!.toFixed(0)}, max ${times[RUNS - 1]!.toFixed(0)}), ${(bytes / 1e6).toFixed(2)} MB; JSON.stringify of the answer ${stringifyMs.toFixed(0)} ms`,
      )
    }
  } finally {
    await b.stop()
  }
}

await main()
