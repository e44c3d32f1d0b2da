import { createYielder } from '../async/yielder.js'
import { ApmatrixError } from '../domain/errors.js'
import type { Condition, StoredMdevStatus } from '../domain/mdev-status.js'
import { normalizeIds } from '../domain/ids.js'
import { sameSpec, type MdevSpec, type MdevState } from '../domain/mdev.js'
import type { DrainPolicySpec } from '../domain/drain-policy.js'
import type { DbTx } from './client.js'
import { RetryTransaction, type StoreContext } from './context.js'
import { fromJson, toJson } from './json-column.js'
import { decodePageToken, encodePageToken, pageSize } from './page-token.js'
import { newResourceVersion } from './resource-version.js'
import { lockMdevRow } from './row-lock.js'
import { dateOf, type DirectSqlite } from './sqlite-direct.js'
import { isUniqueViolation } from './store-errors.js'

export type { MdevSpec, MdevState }

/** A Kubernetes-style condition (docs/api.md (Resources); src/domain/mdev-status.ts). */
export type MdevCondition = Condition

/** Observed state, written by the reconciler and stored as given (JSON). `{}` until the first status write. */
export type MdevStatus = StoredMdevStatus

/** Who made the device: apmatrix (it may remove it) or an import of a device found on the bus. */
export type MdevOrigin = 'apmatrix' | 'imported'

/** A stored matrix device: metadata + spec + status. */
export interface MdevRecord {
  host: string
  uuid: string
  /** Bumped by every spec change, never by status writes. */
  generation: number
  /** Opaque; changes on every write, status included. */
  resourceVersion: string
  labels: Record<string, string>
  owner: string | null
  origin: MdevOrigin
  /** Set by a delete request; the row is removed after the reconciler removed the device. */
  deletionRequestedAt: Date | null
  force: boolean
  spec: MdevSpec
  status: MdevStatus
  createdAt: Date
  updatedAt: Date
}

/** Input of {@link MdevRepo.create}. */
export interface MdevCreate {
  host: string
  uuid: string
  spec: MdevSpec
  labels?: Record<string, string>
  owner?: string | null
  origin?: MdevOrigin
}

/** The fields an update may replace; absent fields are kept. */
export interface MdevPatch {
  spec?: MdevSpec
  labels?: Record<string, string>
  owner?: string | null
}

/** Filters and paging of {@link MdevRepo.list}. */
export interface MdevListQuery {
  state?: MdevState
  owner?: string
  /** Every pair must match. */
  labels?: Record<string, string>
  /** 1..500, default 100. */
  limit?: number
  pageToken?: string
}

/** Optimistic concurrency precondition: the resourceVersion the caller last read (If-Match). */
export interface Precondition {
  expectedResourceVersion?: string
}

type MdevRow = {
  host: string
  uuid: string
  adapters: string
  domains: string
  controlDomains: string
  state: string
  drain: string | null
  generation: number
  resourceVersion: string
  owner: string | null
  origin: string
  deletionRequestedAt: Date | null
  force: boolean
  status: string
  createdAt: Date
  updatedAt: Date
  labels: { key: string; value: string }[]
}

/** The spec in canonical form (sorted unique ids), as stored and compared. */
function canonicalSpec(s: MdevSpec): MdevSpec {
  return {
    adapters: normalizeIds(s.adapters),
    domains: normalizeIds(s.domains),
    controlDomains: normalizeIds(s.controlDomains),
    state: s.state,
    ...(s.drain ? { drain: s.drain } : {}),
  }
}

function specColumns(s: MdevSpec) {
  const n = canonicalSpec(s)
  return {
    adapters: toJson(n.adapters),
    domains: toJson(n.domains),
    controlDomains: toJson(n.controlDomains),
    state: n.state,
    drain: n.drain ? toJson(n.drain) : null,
  }
}

/** The spec of stored spec columns. */
function specOf(r: Pick<MdevRow, 'adapters' | 'domains' | 'controlDomains' | 'state' | 'drain'>): MdevSpec {
  return {
    adapters: fromJson<number[]>(r.adapters, []),
    domains: fromJson<number[]>(r.domains, []),
    controlDomains: fromJson<number[]>(r.controlDomains, []),
    state: r.state as MdevState,
    ...(r.drain ? { drain: fromJson<DrainPolicySpec>(r.drain, {}) } : {}),
  }
}

function toRecord(r: MdevRow): MdevRecord {
  return {
    host: r.host,
    uuid: r.uuid,
    generation: r.generation,
    resourceVersion: r.resourceVersion,
    labels: Object.fromEntries([...r.labels].sort((a, b) => (a.key < b.key ? -1 : 1)).map((l) => [l.key, l.value])),
    owner: r.owner,
    origin: r.origin as MdevOrigin,
    deletionRequestedAt: r.deletionRequestedAt,
    force: r.force,
    spec: specOf(r),
    status: fromJson<MdevStatus>(r.status, {}),
    createdAt: r.createdAt,
    updatedAt: r.updatedAt,
  }
}

const labelRows = (labels: Record<string, string>) => Object.entries(labels).map(([key, value]) => ({ key, value }))

/** A row as SQLite returns it to a direct statement: dates as text, booleans as 0/1, no labels. */
type DirectMdevRow = Omit<MdevRow, 'labels' | 'deletionRequestedAt' | 'force' | 'createdAt' | 'updatedAt'> & {
  deletionRequestedAt: string | null
  force: number
  createdAt: string
  updatedAt: string
}

function fromDirect(r: DirectMdevRow, labels: { key: string; value: string }[]): MdevRecord {
  return toRecord({
    ...r,
    deletionRequestedAt: dateOf(r.deletionRequestedAt),
    force: r.force === 1,
    createdAt: dateOf(r.createdAt),
    updatedAt: dateOf(r.updatedAt),
    labels,
  })
}

/** A host's label rows by device. */
function labelsByUuid(rows: Array<{ uuid: string; key: string; value: string }>): Map<string, { key: string; value: string }[]> {
  const out = new Map<string, { key: string; value: string }[]>()
  for (const l of rows) {
    let ls = out.get(l.uuid)
    if (!ls) out.set(l.uuid, (ls = []))
    ls.push({ key: l.key, value: l.value })
  }
  return out
}

/** One device through SQLite directly. */
function directFind(sql: DirectSqlite, host: string, uuid: string): MdevRecord | undefined {
  const r = sql.get<DirectMdevRow>('SELECT * FROM "Mdev" WHERE "host" = ? AND "uuid" = ?', host, uuid)
  return r && fromDirect(r, sql.all('SELECT "key", "value" FROM "MdevLabel" WHERE "host" = ? AND "uuid" = ?', host, uuid))
}

/**
 * Every device of a host through SQLite directly, by uuid. Decoding is most of the cost (a large host's statuses
 * list every APQN twice), so the loop lets the event loop turn between devices once its budget is spent.
 */
async function directListAll(sql: DirectSqlite, host: string): Promise<MdevRecord[]> {
  const labels = labelsByUuid(sql.all<{ uuid: string; key: string; value: string }>('SELECT "uuid", "key", "value" FROM "MdevLabel" WHERE "host" = ?', host))
  const turn = createYielder()
  const out: MdevRecord[] = []
  for (const r of sql.all<DirectMdevRow>('SELECT * FROM "Mdev" WHERE "host" = ? ORDER BY "uuid"', host)) {
    await turn()
    out.push(fromDirect(r, labels.get(r.uuid) ?? []))
  }
  return out
}

/** `UPDATE ... SET` for the fields of `data` (column names are the field names), and `updatedAt` as Prisma's `@updatedAt` sets it unless `data` names it. */
function directUpdate(sql: DirectSqlite, where: { host: string; uuid: string; resourceVersion?: string }, data: Record<string, unknown>): number {
  const cols = Object.keys(data).filter((c) => c !== 'updatedAt')
  const cond = where.resourceVersion === undefined ? '' : ' AND "resourceVersion" = ?'
  return sql.run(
    `UPDATE "Mdev" SET ${[...cols, 'updatedAt'].map((c) => `"${c}" = ?`).join(', ')} WHERE "host" = ? AND "uuid" = ?${cond}`,
    ...cols.map((c) => data[c]),
    data.updatedAt instanceof Date ? data.updatedAt : new Date(),
    where.host,
    where.uuid,
    ...(where.resourceVersion === undefined ? [] : [where.resourceVersion]),
  )
}

function directInsertLabels(sql: DirectSqlite, host: string, uuid: string, labels: Record<string, string>): void {
  for (const [key, value] of Object.entries(labels))
    sql.run('INSERT INTO "MdevLabel" ("host", "uuid", "key", "value") VALUES (?, ?, ?, ?)', host, uuid, key, value)
}

/**
 * Matrix devices (docs/api.md (Resources)). Every write gives a new resourceVersion; writes that take a
 * {@link Precondition} fail with `CONFLICT` when the stored version differs (If-Match).
 * Writes without one still never lose a concurrent write: they re-run on the fresh row.
 */
export class MdevRepo {
  constructor(private readonly ctx: StoreContext) {}

  /**
   * Creates the device, idempotent on (host, uuid): if it exists with the same spec the stored
   * object is returned with `created: false` (also while it is marked for deletion); with a
   * different spec: `ALREADY_EXISTS`. Labels, owner and origin are not compared. The uuid is stored
   * as given: callers pass the canonical lowercase form (domain/mdev.ts normalizeUuid).
   * An unregistered host: `NOT_FOUND`.
   */
  create(input: MdevCreate): Promise<{ mdev: MdevRecord; created: boolean }> {
    const what = `mdev ${input.host}/${input.uuid}`
    return this.ctx.write(what, async (db, sql) => {
      const existing = await this.find(db, sql, input.host, input.uuid)
      if (existing) {
        if (sameSpec(existing.spec, input.spec)) return { mdev: existing, created: false }
        throw new ApmatrixError('ALREADY_EXISTS', `${what} already exists with a different spec`)
      }
      try {
        if (sql) {
          const now = new Date()
          const spec = specColumns(input.spec)
          sql.run(
            'INSERT INTO "Mdev" ("host", "uuid", "adapters", "domains", "controlDomains", "state", "drain", "generation", "resourceVersion", "owner", "origin", "force", "status", "createdAt", "updatedAt") VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?, 0, ?, ?, ?)',
            input.host,
            input.uuid,
            spec.adapters,
            spec.domains,
            spec.controlDomains,
            spec.state,
            spec.drain,
            newResourceVersion(),
            input.owner ?? null,
            input.origin ?? 'apmatrix',
            '{}',
            now,
            now,
          )
          directInsertLabels(sql, input.host, input.uuid, input.labels ?? {})
          return { mdev: directFind(sql, input.host, input.uuid)!, created: true }
        }
        const row = await db.mdev.create({
          data: {
            host: input.host,
            uuid: input.uuid,
            ...specColumns(input.spec),
            generation: 1,
            resourceVersion: newResourceVersion(),
            owner: input.owner ?? null,
            origin: input.origin ?? 'apmatrix',
            labels: { create: labelRows(input.labels ?? {}) },
          },
          include: { labels: true },
        })
        return { mdev: toRecord(row), created: true }
      } catch (e) {
        // A concurrent create of the same uuid committed after our read: decide again on its row.
        if (isUniqueViolation(e)) throw new RetryTransaction(`${what}: concurrent create`)
        throw e
      }
    })
  }

  /** The device; `NOT_FOUND` if absent. */
  get(host: string, uuid: string): Promise<MdevRecord> {
    return this.ctx.read(`mdev ${host}/${uuid}`, async (db, sql) => this.mustFind(db, sql, host, uuid))
  }

  /**
   * The device's resourceVersion and owner as last committed (not through the read cache), or undefined if it is
   * absent: one small read, for a precondition answered before any lock is taken (mutation-runner.ts precheck).
   */
  version(host: string, uuid: string): Promise<{ resourceVersion: string; owner: string | null } | undefined> {
    return this.ctx.read(`mdev ${host}/${uuid}`, async (db, sql) => {
      if (sql)
        return sql.get<{ resourceVersion: string; owner: string | null }>(
          'SELECT "resourceVersion", "owner" FROM "Mdev" WHERE "host" = ? AND "uuid" = ?',
          host,
          uuid,
        )
      return (await db.mdev.findUnique({ where: { host_uuid: { host, uuid } }, select: { resourceVersion: true, owner: true } })) ?? undefined
    })
  }

  /**
   * One page of a host's devices ordered by uuid, filtered by state, owner and labels (all must match).
   * `nextPageToken` is set when more may follow; pass it back unchanged with the same filters.
   * A bad limit or token: `INVALID_ARGUMENT`.
   */
  async list(host: string, q: MdevListQuery = {}): Promise<{ items: MdevRecord[]; nextPageToken?: string }> {
    const limit = pageSize(q.limit)
    const after = q.pageToken ? decodePageToken(q.pageToken) : undefined
    return this.ctx.read(`mdevs of ${host}`, async (db) => {
      const rows = await db.mdev.findMany({
        where: {
          host,
          ...(q.state ? { state: q.state } : {}),
          ...(q.owner !== undefined ? { owner: q.owner } : {}),
          ...(after !== undefined ? { uuid: { gt: after } } : {}),
          AND: Object.entries(q.labels ?? {}).map(([key, value]) => ({ labels: { some: { key, value } } })),
        },
        include: { labels: true },
        orderBy: { uuid: 'asc' },
        take: limit + 1,
      })
      const items = rows.slice(0, limit).map(toRecord)
      return rows.length > limit ? { items, nextPageToken: encodePageToken(items[items.length - 1].uuid) } : { items }
    })
  }

  /** Every device of a host, ordered by uuid (the reconciler's desired state; no paging). */
  listAll(host: string): Promise<MdevRecord[]> {
    return this.ctx.read(`mdevs of ${host}`, async (db, sql) => {
      if (sql) return directListAll(sql, host)
      // Labels by host, not `include`: Prisma would bind every uuid of the host as a parameter (over the limit
      // of bound parameters for a host with a thousand devices).
      const rows = await db.mdev.findMany({ where: { host }, orderBy: { uuid: 'asc' } })
      const labels = labelsByUuid(await db.mdevLabel.findMany({ where: { host }, select: { uuid: true, key: true, value: true } }))
      return rows.map((r) => toRecord({ ...r, labels: labels.get(r.uuid) ?? [] }))
    })
  }

  /**
   * Replaces the given fields. The generation is bumped only when the spec changes; a patch that
   * changes nothing returns the stored object unchanged. `NOT_FOUND`, `CONFLICT` (precondition).
   * `known`: the row as the ambient transaction already read it (the mutation runner reads the whole host
   * under the host's lock): the row lock and the read are skipped (three queries on PostgreSQL). A write by
   * another path in between (a status write) makes the compare-and-set match nothing: `CONFLICT` with a
   * precondition, else the transaction runs again, as after a lost row lock race.
   */
  update(host: string, uuid: string, patch: MdevPatch, pre: Precondition = {}, known?: MdevRecord): Promise<MdevRecord> {
    return this.ctx.write(`mdev ${host}/${uuid}`, async (db, sql) => {
      const cur = known ? checked(known, pre) : await this.current(db, sql, host, uuid, pre)
      const specChanged = patch.spec !== undefined && !sameSpec(cur.spec, patch.spec)
      const labelsChanged = patch.labels !== undefined && toJson(sortedEntries(patch.labels)) !== toJson(sortedEntries(cur.labels))
      const ownerChanged = patch.owner !== undefined && patch.owner !== cur.owner
      if (!specChanged && !labelsChanged && !ownerChanged) return cur
      const columns = specChanged ? specColumns(patch.spec!) : undefined
      const written = await this.casUpdate(db, sql, cur, pre, {
        ...(columns ? { ...columns, generation: cur.generation + 1 } : {}),
        ...(ownerChanged ? { owner: patch.owner } : {}),
      })
      if (labelsChanged && sql) {
        sql.run('DELETE FROM "MdevLabel" WHERE "host" = ? AND "uuid" = ?', host, uuid)
        directInsertLabels(sql, host, uuid, patch.labels!)
      } else if (labelsChanged) {
        await db.mdevLabel.deleteMany({ where: { host, uuid } })
        await db.mdevLabel.createMany({ data: labelRows(patch.labels!).map((l) => ({ host, uuid, ...l })) })
      }
      // The row as stored, without reading it back (two queries on PostgreSQL): the locked row and what this
      // write set, the spec decoded from the stored columns as a read decodes it.
      return {
        ...cur,
        generation: columns ? cur.generation + 1 : cur.generation,
        spec: columns ? specOf(columns) : cur.spec,
        owner: ownerChanged ? patch.owner! : cur.owner,
        labels: labelsChanged ? Object.fromEntries(sortedEntries(patch.labels!)) : cur.labels,
        ...written,
      }
    })
  }

  /**
   * Stores the observed status; the generation is not bumped. A status equal to the stored one writes
   * nothing (periodic resyncs do not churn resourceVersions). `NOT_FOUND`, `CONFLICT` (precondition).
   */
  updateStatus(host: string, uuid: string, status: MdevStatus, pre: Precondition = {}): Promise<MdevRecord> {
    return this.ctx.write(`mdev ${host}/${uuid}`, async (db, sql) => {
      const cur = await this.current(db, sql, host, uuid, pre)
      if (toJson(status) === toJson(cur.status)) return cur
      await this.casUpdate(db, sql, cur, pre, { status: toJson(status) })
      return this.mustFind(db, sql, host, uuid)
    })
  }

  /**
   * Stores the observed status of several devices of a host, one UPDATE each without reading the row first
   * (the reconciler's write at the end of a pass, in its transaction): the generation is not bumped, each row
   * written gets a new resourceVersion. A device no longer stored is skipped. Lets the event loop turn now and
   * then (a pass over 256 devices). Returns the devices written, with their new resourceVersions.
   */
  setStatuses(host: string, statuses: Array<{ uuid: string; status: MdevStatus }>): Promise<Array<{ uuid: string; resourceVersion: string }>> {
    return this.ctx.write(`status of ${statuses.length} mdevs of ${host}`, async (db, sql) => {
      const turn = createYielder()
      const written: Array<{ uuid: string; resourceVersion: string }> = []
      for (const { uuid, status } of statuses) {
        await turn()
        const data = { status: toJson(status), resourceVersion: newResourceVersion() }
        const n = sql ? directUpdate(sql, { host, uuid }, data) : (await db.mdev.updateMany({ where: { host, uuid }, data })).count
        if (n === 1) written.push({ uuid, resourceVersion: data.resourceVersion })
      }
      return written
    })
  }

  /**
   * Sets the deletion marker (idempotent: the first request time is kept; `force` once set stays set).
   * The row stays until {@link MdevRepo.delete}. `NOT_FOUND`, `CONFLICT` (precondition).
   */
  markDeleted(host: string, uuid: string, opts: { force?: boolean } & Precondition = {}): Promise<MdevRecord> {
    return this.ctx.write(`mdev ${host}/${uuid}`, async (db, sql) => {
      const cur = await this.current(db, sql, host, uuid, opts)
      const force = cur.force || (opts.force ?? false)
      if (cur.deletionRequestedAt && force === cur.force) return cur
      await this.casUpdate(db, sql, cur, opts, { deletionRequestedAt: cur.deletionRequestedAt ?? this.ctx.clock(), force })
      return this.mustFind(db, sql, host, uuid)
    })
  }

  /** Removes the row and its labels. `NOT_FOUND`, `CONFLICT` (precondition). */
  delete(host: string, uuid: string, pre: Precondition = {}): Promise<void> {
    return this.ctx.write(`mdev ${host}/${uuid}`, async (db, sql) => {
      const cur = await this.current(db, sql, host, uuid, pre)
      const n = sql
        ? sql.run('DELETE FROM "Mdev" WHERE "host" = ? AND "uuid" = ? AND "resourceVersion" = ?', host, uuid, cur.resourceVersion)
        : (await db.mdev.deleteMany({ where: { host, uuid, resourceVersion: cur.resourceVersion } })).count
      if (n === 0) this.lostRace(host, uuid, pre)
    })
  }

  private async find(db: DbTx, sql: DirectSqlite | undefined, host: string, uuid: string): Promise<MdevRecord | undefined> {
    if (sql) return directFind(sql, host, uuid)
    const r = await db.mdev.findUnique({ where: { host_uuid: { host, uuid } }, include: { labels: true } })
    return r ? toRecord(r) : undefined
  }

  private async mustFind(db: DbTx, sql: DirectSqlite | undefined, host: string, uuid: string): Promise<MdevRecord> {
    const r = await this.find(db, sql, host, uuid)
    if (!r) throw new ApmatrixError('NOT_FOUND', `mdev ${host}/${uuid} not found`)
    return r
  }

  /** The row for a write: locked, then read, then checked against the precondition. */
  private async current(db: DbTx, sql: DirectSqlite | undefined, host: string, uuid: string, pre: Precondition): Promise<MdevRecord> {
    await lockMdevRow(this.ctx, db, host, uuid)
    return checked(await this.mustFind(db, sql, host, uuid), pre)
  }

  /** Compare-and-set on the version read: on PostgreSQL a concurrent writer blocks us, then we match nothing. */
  private async casUpdate(
    db: DbTx,
    sql: DirectSqlite | undefined,
    cur: MdevRecord,
    pre: Precondition,
    data: Record<string, unknown>,
  ): Promise<{ resourceVersion: string; updatedAt: Date }> {
    const where = { host: cur.host, uuid: cur.uuid, resourceVersion: cur.resourceVersion }
    const written = { resourceVersion: newResourceVersion(), updatedAt: new Date() }
    const set = { ...data, ...written }
    const n = sql ? directUpdate(sql, where, set) : (await db.mdev.updateMany({ where, data: set })).count
    if (n === 0) this.lostRace(cur.host, cur.uuid, pre)
    return written
  }

  private lostRace(host: string, uuid: string, pre: Precondition): never {
    if (pre.expectedResourceVersion !== undefined) {
      throw new ApmatrixError('CONFLICT', `mdev ${host}/${uuid} was changed concurrently`)
    }
    throw new RetryTransaction(`mdev ${host}/${uuid}: concurrent write`)
  }
}

/** `cur`, unless the precondition names another version (`CONFLICT`). */
function checked(cur: MdevRecord, pre: Precondition): MdevRecord {
  if (pre.expectedResourceVersion !== undefined && pre.expectedResourceVersion !== cur.resourceVersion) {
    throw new ApmatrixError('CONFLICT', `mdev ${cur.host}/${cur.uuid} has resourceVersion ${cur.resourceVersion}, not ${pre.expectedResourceVersion}`)
  }
  return cur
}

function sortedEntries(o: Record<string, string>): [string, string][] {
  return Object.entries(o).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
}
