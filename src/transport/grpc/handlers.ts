/**
 * The gRPC handlers of docs/api.md (gRPC): each maps its request to ONE service call and the result back;
 * no rules live here (src/service/ has them all, so REST and gRPC cannot diverge).
 */
import { drainedOrEnded } from '../stream-drain.js'
import type * as grpc from '@grpc/grpc-js'
import { ApmatrixError } from '../../domain/errors.js'
import {
  type ApmatrixService,
  type HardwareInput,
  HubClosedError,
  type MdevView,
  type Mutation,
  type WatchFormat,
  type WatchInput,
} from '../../service/index.js'
import type { AuthServiceHandlers } from '../../generated/grpc/apmatrix/v1/AuthService.js'
import type { DesiredStateServiceHandlers } from '../../generated/grpc/apmatrix/v1/DesiredStateService.js'
import type { EmulatorServiceHandlers } from '../../generated/grpc/apmatrix/v1/EmulatorService.js'
import type { EventServiceHandlers } from '../../generated/grpc/apmatrix/v1/EventService.js'
import type { HostServiceHandlers } from '../../generated/grpc/apmatrix/v1/HostService.js'
import type { InventoryServiceHandlers } from '../../generated/grpc/apmatrix/v1/InventoryService.js'
import type { MdevServiceHandlers } from '../../generated/grpc/apmatrix/v1/MdevService.js'
import type { WatchRequest__Output } from '../../generated/grpc/apmatrix/v1/WatchRequest.js'
import type { Event } from '../../generated/grpc/apmatrix/v1/Event.js'
import { callInfo, setStale, unary } from './call.js'
import {
  adapterOut,
  auditPageOut,
  auditQueryIn,
  busMdevOut,
  callContextIn,
  desiredIn,
  domainsOut,
  enumIn,
  bookmarkOut,
  eventOut,
  hostIn,
  hostOut,
  limitIn,
  masksOut,
  mdevOut,
  optionalIn,
  planOut,
  planViewIn,
  queueOut,
  requiredIn,
  specIn,
  whoAmIOut,
} from './convert.js'
import { toGrpcError } from './errors.js'
import { faultStatusMessage } from '../../emulator/faults.js'
import { maskToUpdate } from './field-mask.js'
import type { GrpcLogger } from './interceptors.js'

/** Everything the handlers need. */
export interface HandlerDeps {
  service: ApmatrixService
  logger: GrpcLogger | null
  /** Open Watch streams: each entry ends its stream with UNAVAILABLE and a `resume-seq` (server shutdown). */
  watches: Set<() => void>
}

const STATES = ['started', 'stopped'] as const
const HARDWARE_ACTIONS: ReadonlyArray<HardwareInput['action']> = [
  'config-off',
  'config-on',
  'checkstop',
  'checkstop-clear',
  'add-adapter',
  'remove-adapter',
  'add-domain',
  'remove-domain',
  'set-mode',
]

/**
 * The message of a device read from the read cache: views are frozen and shared per device version
 * (read-cache.ts), so the conversion is made once per version (grpc-js only reads the message).
 */
const mdevMessages = new WeakMap<MdevView, ReturnType<typeof mdevOut>>()
function cachedMdevOut(m: MdevView): ReturnType<typeof mdevOut> {
  let out = mdevMessages.get(m)
  if (!out) mdevMessages.set(m, (out = mdevOut(m)))
  return out
}

function mutationOut<T, W>(out: Mutation<T>, map: (r: T) => W): { result: W | null; dry_run: boolean; plan: ReturnType<typeof planOut> | null } {
  return out.dryRun ? { result: null, dry_run: true, plan: planOut(out.plan) } : { result: map(out.result), dry_run: false, plan: null }
}

export function hostHandlers({ service, logger }: HandlerDeps): HostServiceHandlers {
  return {
    ListHosts: unary(logger, async (_req, info) => ({ hosts: (await service.listHosts(callContextIn(info, {}))).map(hostOut) })),
    GetHost: unary(logger, async (req) => hostOut(await service.getHost(hostIn(req.host)))),
    GetMasks: unary(logger, async (req, info) => {
      const r = await service.readMasks(hostIn(req.host))
      setStale(info, r.staleMs)
      return masksOut(r.value)
    }),
    SetMasks: unary(logger, async (req, info) => {
      const input = { ...(req.apmask ? { apmask: req.apmask } : {}), ...(req.aqmask ? { aqmask: req.aqmask } : {}) }
      const m = mutationOut(await service.setMasks(hostIn(req.host), input, callContextIn(info, req)), masksOut)
      return { masks: m.result, dry_run: m.dry_run, plan: m.plan }
    }),
  }
}

export function inventoryHandlers({ service, logger }: HandlerDeps): InventoryServiceHandlers {
  return {
    ListAdapters: unary(logger, async (req) => ({ items: (await service.listAdapters(hostIn(req.host))).items.map(adapterOut) })),
    ListQueues: unary(logger, async (req, info) => {
      const page = await service.listQueues(
        hostIn(req.host),
        {
          ...(req.adapter ? { adapter: req.adapter.value } : {}),
          ...(req.domain ? { domain: req.domain.value } : {}),
          ...(req.driver ? { driver: enumIn(req.driver, ['cex4queue', 'vfio_ap', 'none'] as const, 'driver')! } : {}),
          ...(req.owner ? { owner: req.owner } : {}),
          ...(req.limit ? { limit: limitIn(req.limit)! } : {}),
          ...(req.page_token ? { pageToken: req.page_token } : {}),
        },
        callContextIn(info, {}),
      )
      return { items: page.items.map(queueOut), next_page_token: page.nextPageToken ?? '' }
    }),
    ListDomains: unary(logger, async (req) => domainsOut(await service.listDomains(hostIn(req.host)))),
    ListBusMdevs: unary(logger, async (req, info) => ({
      items: (await service.listBusMdevs(hostIn(req.host), callContextIn(info, {}))).items.map(busMdevOut),
    })),
  }
}

export function authHandlers({ service, logger }: HandlerDeps): AuthServiceHandlers {
  return {
    WhoAmI: unary(logger, async (_req, info) => whoAmIOut(service.whoAmI(callContextIn(info, {})))),
    ListAuditRecords: unary(logger, async (req) => auditPageOut(await service.listAudit(auditQueryIn(req)))),
  }
}

export function mdevHandlers({ service, logger }: HandlerDeps): MdevServiceHandlers {
  return {
    CreateMdev: unary(logger, async (req, info) => {
      const out = await service.createMdev(
        hostIn(req.host),
        { ...(req.uuid ? { uuid: req.uuid } : {}), spec: specIn(req.spec), labels: req.labels, ...(req.owner ? { owner: req.owner } : {}) },
        callContextIn(info, req),
      )
      if (out.dryRun) return { mdev: null, created: false, replayed: false, dry_run: true, plan: planOut(out.plan) }
      return { mdev: mdevOut(out.result), created: out.created !== false, replayed: !!out.replayed, dry_run: false, plan: null }
    }),
    GetMdev: unary(logger, async (req, info) => {
      const r = await service.readMdev(hostIn(req.host), requiredIn(req.uuid, 'uuid', 64), callContextIn(info, {}))
      setStale(info, r.staleMs)
      return cachedMdevOut(r.value)
    }),
    ListMdevs: unary(logger, async (req, info) => {
      const r = await service.readMdevs(
        hostIn(req.host),
        {
          ...(req.state ? { state: enumIn(req.state, STATES, 'state')! } : {}),
          ...(req.owner ? { owner: req.owner } : {}),
          ...(Object.keys(req.labels).length ? { labels: req.labels } : {}),
          ...(req.limit ? { limit: limitIn(req.limit)! } : {}),
          ...(req.page_token ? { pageToken: req.page_token } : {}),
        },
        callContextIn(info, {}),
      )
      setStale(info, r.staleMs)
      return { items: r.value.items.map(cachedMdevOut), next_page_token: r.value.nextPageToken ?? '' }
    }),
    UpdateMdev: unary(logger, async (req, info) => {
      const host = hostIn(req.host)
      const uuid = requiredIn(req.uuid, 'uuid', 64)
      const ctx = callContextIn(info, req)
      let out: Mutation<MdevView>
      if (!req.update_mask?.paths.length) {
        out = await service.replaceMdev(host, uuid, { spec: specIn(req.spec), labels: req.labels, owner: optionalIn(req.owner) ?? null }, ctx)
      } else {
        out = await service.updateMdevFields(host, uuid, maskToUpdate(req), ctx)
      }
      const m = mutationOut(out, mdevOut)
      return { mdev: m.result, dry_run: m.dry_run, plan: m.plan }
    }),
    DeleteMdev: unary(logger, async (req, info) => {
      const out = await service.deleteMdev(hostIn(req.host), requiredIn(req.uuid, 'uuid', 64), { ...callContextIn(info, req), force: req.force })
      const m = mutationOut(out, mdevOut)
      return { mdev: m.result, dry_run: m.dry_run, plan: m.plan }
    }),
    ExportMdev: unary(logger, async (req, info) => {
      const out = await service.exportMdev(hostIn(req.host), requiredIn(req.uuid, 'uuid', 64), requiredIn(req.format, 'format', 32), callContextIn(info, {}))
      return { format: out.format, content_type: out.contentType, content: out.body, path: out.path ?? '' }
    }),
    ImportMdevs: unary(logger, async (req, info) => {
      const host = hostIn(req.host)
      const format = requiredIn(req.format, 'format', 32)
      const document = requiredIn(req.document, 'document', 1024 * 1024)
      const ctx = {
        ...callContextIn(info, req),
        ...(req.owner ? { owner: req.owner } : {}),
        ...(req.state ? { state: enumIn(req.state, STATES, 'state')! } : {}),
      }
      const out = await service.importMdevs(host, format, document, ctx)
      if (out.dryRun) return { items: [], dry_run: true, plan: planOut(out.plan), actions: [], skipped: [], created: false, replayed: false }
      const r = out.result
      return {
        items: r.items.map(mdevOut),
        dry_run: false,
        plan: null,
        actions: r.actions,
        skipped: r.skipped.map((k) => ({ parent: k.parent, uuid: k.uuid, mdev_type: k.mdevType ?? '', reason: k.reason })),
        created: !!out.created,
        replayed: !!out.replayed,
      }
    }),
  }
}

export function desiredStateHandlers({ service, logger }: HandlerDeps): DesiredStateServiceHandlers {
  return {
    Plan: unary(logger, async (req) => {
      const host = hostIn(req.host)
      const view = planViewIn(req.view)
      const m = req.proposal === 'mdev' ? req.mdev : null
      const doc = m
        ? { ...(m.uuid ? { uuid: m.uuid } : {}), spec: specIn(m.spec), labels: m.labels, ...(m.owner ? { owner: m.owner } : {}) }
        : desiredIn(req.desired ?? null)
      return { plan: planOut(await service.plan(host, doc, view)) }
    }),
    Apply: unary(logger, async (req, info) => {
      const out = await service.applyDesired(hostIn(req.host), desiredIn(req.desired), callContextIn(info, req))
      if (out.dryRun) return { plan: planOut(out.plan), masks: null, mdevs: [], dry_run: true }
      const r = out.result
      return {
        plan: planOut(r.plan),
        masks: { generation: r.masks.generation, resource_version: r.masks.resourceVersion },
        mdevs: r.mdevs.map((m) => ({ uuid: m.uuid, generation: m.generation, resource_version: m.resourceVersion, action: m.action })),
        dry_run: false,
      }
    }),
  }
}

export function emulatorHandlers({ service, logger }: HandlerDeps): EmulatorServiceHandlers {
  return {
    ReadSysfs: unary(logger, async (req) => ({ text: await service.readSysfs(hostIn(req.host), requiredIn(req.path, 'path', 512)) })),
    WriteSysfs: unary(logger, async (req, info) => {
      if (req.value.length > 4096) throw new ApmatrixError('INVALID_ARGUMENT', 'value: at most 4096 characters')
      await service.writeSysfs(hostIn(req.host), requiredIn(req.path, 'path', 512), req.value, callContextIn(info, {}))
      return {}
    }),
    Hardware: unary(logger, async (req, info) => {
      const input = {
        action: enumIn(requiredIn(req.action, 'action', 32), HARDWARE_ACTIONS, 'action'),
        ...(req.apid ? { apid: req.apid.value } : {}),
        ...(req.apqi ? { apqi: req.apqi.value } : {}),
        ...(req.raw_type ? { rawType: req.raw_type.value } : {}),
        ...(req.type ? { type: req.type } : {}),
        ...(req.mode ? { mode: enumIn(req.mode, ['cca', 'ep11', 'accel'] as const, 'mode') } : {}),
        ...(req.control ? { control: true } : {}),
        ...(req.notify ? { notify: req.notify.value } : {}),
      } as HardwareInput
      await service.hardware(hostIn(req.host), input, callContextIn(info, {}))
      return {}
    }),
    ListGuests: unary(logger, async (req) => ({ items: (await service.listGuests(hostIn(req.host))).items })),
    OpenGuest: unary(logger, async (req, info) => {
      await service.openGuest(hostIn(req.host), requiredIn(req.uuid, 'uuid', 64), requiredIn(req.guest, 'guest', 128), callContextIn(info, {}))
      return {}
    }),
    CloseGuest: unary(logger, async (req, info) => {
      await service.closeGuest(hostIn(req.host), requiredIn(req.guest, 'guest', 128), callContextIn(info, {}))
      return {}
    }),
    SubmitRequests: unary(logger, async (req) => service.submitRequests(hostIn(req.host), requiredIn(req.apqn, 'apqn', 16), req.count)),
    SetWorkload: unary(logger, async (req) => (await service.setWorkload(hostIn(req.host), requiredIn(req.apqn, 'apqn', 16), req.per_second), {})),
    Reboot: unary(logger, async (req, info) => hostOut(await service.reboot(hostIn(req.host), callContextIn(info, {})))),
    SetFaults: unary(logger, async (req, info) => {
      // The service checks the rules (INVALID_ARGUMENT naming the field), as for REST.
      const config = {
        rules: req.rules.map((r) => ({ path: r.path, rate: r.rate, kind: r.kind, ...(r.delay_ms ? { delayMs: r.delay_ms } : {}) })),
        ...(req.seed ? { seed: req.seed.value } : {}),
      }
      return faultStatusMessage(await service.setFaults(hostIn(req.host), config, callContextIn(info, {})))
    }),
    GetFaults: unary(logger, async (req) => faultStatusMessage(await service.faults(hostIn(req.host)))),
    ClearFaults: unary(logger, async (req, info) => faultStatusMessage(await service.clearFaults(hostIn(req.host), callContextIn(info, {})))),
  }
}

const WATCH_FORMATS: Record<string, WatchFormat | undefined> = {
  WATCH_FORMAT_UNSPECIFIED: undefined,
  WATCH_FORMAT_APMATRIX: 'apmatrix',
  WATCH_FORMAT_LIBVIRT: 'libvirt',
}

/** A Watch request as the service's watch input (the service checks it). INVALID_ARGUMENT for a malformed seq or format. */
function watchInput(req: WatchRequest__Output): WatchInput {
  const since = Number(req.since_seq)
  if (!Number.isSafeInteger(since) || since < 0) throw new ApmatrixError('INVALID_ARGUMENT', 'since_seq is out of range')
  if (!Object.hasOwn(WATCH_FORMATS, req.format)) throw new ApmatrixError('INVALID_ARGUMENT', 'format: unknown WatchFormat')
  const format = WATCH_FORMATS[req.format]
  return {
    ...(req.from_now ? {} : { sinceSeq: since }),
    ...(req.host ? { host: req.host } : {}),
    ...(req.kinds.length ? { kinds: req.kinds } : {}),
    ...(req.types.length ? { types: req.types } : {}),
    ...(format ? { format } : {}),
    ...(req.bookmark_seconds ? { bookmarkSeconds: req.bookmark_seconds } : {}),
  }
}

/** `EventService.Watch` over the service's watch: maps the request, each event, and the end of the watch. */
export function eventHandlers({ service, logger, watches }: HandlerDeps): EventServiceHandlers {
  return {
    async Watch(call: grpc.ServerWritableStream<WatchRequest__Output, Event>) {
      const info = callInfo(call)
      let finished = false
      let watch: { position: number; close(): void } | null = null
      const finish = () => {
        finished = true
        watch?.close()
        watches.delete(shutdown)
      }
      // The stream's 'error' becomes the call's status once the queued messages are flushed.
      const fail = (err: unknown) => {
        if (finished) return
        finish()
        if (call.cancelled) return
        try {
          call.emit(
            'error',
            toGrpcError(err, info.requestId, (e) => logger?.error({ err: e, requestId: info.requestId }, 'watch failed')),
          )
        } catch (e) {
          logger?.error({ err: e, requestId: info.requestId }, 'watch status could not be sent')
        }
      }
      const shutdown = () => fail(new HubClosedError(watch?.position ?? 0))
      // Backpressure: when grpc-js buffers, wait for 'drain' (or the end of the call) before the next message.
      const send = async (message: Event) => {
        if (finished) return
        if (!call.write(message)) await drainedOrEnded(call, ['close', 'cancelled'])
      }
      call.on('cancelled', finish)
      call.on('close', finish)
      let opened: { position: number; close(): void }
      try {
        opened = await service.watch(
          { ...watchInput(call.request), principal: info.principal },
          ({ event, libvirt }) => send(eventOut(event, libvirt)),
          fail,
          (position) => send(bookmarkOut(position)),
        )
      } catch (e) {
        return fail(e)
      }
      watch = opened
      // The call may have ended while the watch opened.
      if (finished) return opened.close()
      watches.add(shutdown)
    },
  }
}
