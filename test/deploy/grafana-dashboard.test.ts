/**
 * deploy/grafana/apmatrix-dashboard.json asks only for metrics the service exports: every metric a query names
 * (a selector `name{...}` or `label_values(name, ...)`) is a family in the `/metrics` answer of a running service
 * (`apmatrix serve` wired as main.ts wires it, scraped over its socket), histogram series (`_bucket`, `_sum`,
 * `_count`) through their family. Every panel has a query, and the check fails on a query naming a metric that
 * does not exist.
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import { loadConfig } from '../../src/config.js'
import { createLogger, startService } from '../../src/main.js'
import { projectRoot } from '../../src/paths.js'

const DASHBOARD = path.join(projectRoot, 'deploy/grafana/apmatrix-dashboard.json')

interface Panel {
  title: string
  targets?: Array<{ expr: string }>
}

/** The metric names a PromQL expression selects: identifiers followed by `{`, and the first argument of label_values(). */
export function metricsNamed(expr: string): string[] {
  const names = new Set<string>()
  for (const m of expr.matchAll(/([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{/g)) names.add(m[1]!)
  for (const m of expr.matchAll(/label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)/g)) names.add(m[1]!)
  return [...names]
}

/** Families of a Prometheus text exposition (`# TYPE name kind`), with the series names each one answers to. */
function exported(text: string): Set<string> {
  const out = new Set<string>()
  for (const m of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
    const [, name, kind] = m as unknown as [string, string, string]
    out.add(name)
    if (kind === 'histogram') for (const s of ['_bucket', '_sum', '_count']) out.add(name + s)
    if (kind === 'summary') for (const s of ['_sum', '_count']) out.add(name + s)
  }
  return out
}

t.test('the parser finds what a query selects (the check can fail)', async (t) => {
  t.same(metricsNamed('histogram_quantile(0.99, sum by (le, host) (rate(a_b_bucket{host=~"$host"}[5m])))'), ['a_b_bucket'])
  t.same(metricsNamed('label_values(apmatrix_apqns, host)'), ['apmatrix_apqns'])
  t.same(metricsNamed('sum by (x) (rate(c_total {y="1"}[1m])) / d{}'), ['c_total', 'd'])
  const known = exported('# TYPE h histogram\n# TYPE c counter\n')
  t.same(
    ['h_bucket', 'c', 'nope_total'].filter((n) => !known.has(n)),
    ['nope_total'],
  )
})

t.test('every query of the Grafana dashboard names a metric a running service exports', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'apmatrix-dash-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const cfg = loadConfig(
    {},
    {
      DATABASE_URL: `file:${path.join(dir, 'db.sqlite')}`,
      APMATRIX_HTTP_ADDR: '127.0.0.1:0',
      APMATRIX_GRPC_ADDR: '127.0.0.1:0',
      APMATRIX_PROFILE: 'demo',
      APMATRIX_LOG_LEVEL: 'silent',
    },
  )
  const svc = await startService(cfg, createLogger('silent'))
  t.teardown(() => svc.close())
  const res = await fetch(`${svc.httpUrl}/metrics`)
  t.equal(res.status, 200)
  const families = exported(await res.text())
  t.ok(families.size > 20, `the service exports ${families.size} series names`)

  const dash = JSON.parse(fs.readFileSync(DASHBOARD, 'utf8')) as { panels: Panel[]; templating: { list: Array<{ definition?: string }> } }
  const queries: Array<[string, string]> = []
  for (const p of dash.panels) {
    t.ok(p.targets?.length, `panel '${p.title}' has a query`)
    for (const q of p.targets ?? []) queries.push([p.title, q.expr])
  }
  for (const v of dash.templating.list) if (v.definition) queries.push(['variable', v.definition])
  const missing: string[] = []
  let named = 0
  for (const [title, expr] of queries) {
    const names = metricsNamed(expr)
    if (names.length === 0) missing.push(`${title}: '${expr}' selects no metric`)
    for (const n of names) {
      named++
      if (!families.has(n)) missing.push(`${title}: ${n}`)
    }
  }
  t.same(missing, [], `${queries.length} queries name ${named} metrics, all exported`)

  // The figures are fed, not only declared: after the first passes the host's series carry what the API shows.
  const sample = (text: string, name: string, labels: string) => {
    const m = new RegExp(`^${name}\\{${labels}\\} (\\S+)$`, 'm').exec(text)
    return m ? Number(m[1]) : undefined
  }
  let text = ''
  const deadline = Date.now() + 60_000
  while (Date.now() < deadline) {
    text = await (await fetch(`${svc.httpUrl}/metrics`)).text()
    if (sample(text, 'apmatrix_lease_held', 'host="local"') === 1 && sample(text, 'apmatrix_apqns', 'host="local",owner="host"') !== undefined) break
    await new Promise((r) => setTimeout(r, 200))
  }
  const queues = (await (await fetch(`${svc.httpUrl}/v1/hosts/local/queues?limit=500`)).json()) as { items: Array<{ driver: string; owner: string | null }> }
  const hostOwned = queues.items.filter((q) => q.driver !== 'vfio_ap').length
  t.equal(sample(text, 'apmatrix_apqns', 'host="local",owner="host"'), hostOwned, `apmatrix_apqns{owner="host"} is the API's count (${hostOwned})`)
  t.equal(sample(text, 'apmatrix_lease_held', 'host="local"'), 1, 'this replica holds the lease of local')
  t.ok((sample(text, 'controller_runtime_reconcile_total', 'controller="apmatrix",host="local",result="success"') ?? 0) >= 1, 'a successful pass was counted')
  t.ok((sample(text, 'workqueue_adds_total', 'name="hosts"') ?? 0) >= 1, 'the work queue counted its adds')
  t.equal(sample(text, 'apmatrix_mdevs', 'host="local",condition="total"'), 0, 'no matrix device yet')
  t.ok((sample(text, 'apmatrix_store_operation_duration_seconds_count', 'operation="transaction"') ?? 0) >= 1, 'store transactions timed')
})
