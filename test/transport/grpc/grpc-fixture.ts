/**
 * The gRPC server over a real socket (127.0.0.1, port 0): a real service (test/service/service-fixture.ts),
 * a real event hub over its store, and grpc-js clients built from the same protos.
 */
import type { Event__Output } from '../../../src/generated/grpc/apmatrix/v1/Event.js'
import type { WatchRequest } from '../../../src/generated/grpc/apmatrix/v1/WatchRequest.js'
import * as grpc from '@grpc/grpc-js'
import type { Test } from 'tap'
import type { EventHub, EventHubOptions } from '../../../src/events/hub.js'
import { loadApiProto, type ApiProto } from '../../../src/transport/grpc/proto.js'
import { startGrpcServer, type GrpcServer, type GrpcServerOptions } from '../../../src/transport/grpc/server.js'
import type { TestDatabase } from '../../store/pg-helper.js'
import { serviceFixture, type ServiceFixture } from '../../service/service-fixture.js'

type V1 = ApiProto['v1']
type ClientOf<K extends keyof V1> = V1[K] extends { new (...a: never[]): infer C } ? C : never

export interface Clients {
  hosts: ClientOf<'HostService'>
  inventory: ClientOf<'InventoryService'>
  mdevs: ClientOf<'MdevService'>
  desired: ClientOf<'DesiredStateService'>
  events: ClientOf<'EventService'>
  emulator: ClientOf<'EmulatorService'>
}

export interface GrpcFixture extends ServiceFixture {
  hub: EventHub
  grpc: GrpcServer
  target: string
  clients: Clients
  /** New clients on their own channel (closed at teardown). */
  newClients(opts?: grpc.ChannelOptions): Clients
}

/** Outcome of a unary call: the response or the error, and the metadata both ways. */
export interface Outcome<R> {
  res?: R
  err?: grpc.ServiceError
  headers: grpc.Metadata | null
  trailers: grpc.Metadata | null
}

/** Calls a unary method (`client.Method.bind(client)`) and collects response, error and metadata. */
/**
 * A bound unary client method. Typed by its last overload `(argument, callback)`, which is the one
 * TypeScript infers from; called with metadata and options.
 */
export type UnaryMethod<Req, Res> = (argument: Req, callback: grpc.requestCallback<Res>) => grpc.ClientUnaryCall
type FullUnary<Req, Res> = (argument: Req, md: grpc.Metadata, opts: grpc.CallOptions, callback: grpc.requestCallback<Res>) => grpc.ClientUnaryCall

export function unary<Req, Res>(m: UnaryMethod<Req, Res>, req: Req, opts: { metadata?: grpc.Metadata; deadlineMs?: number } = {}): Promise<Outcome<Res>> {
  const method = m as unknown as FullUnary<Req, Res>
  return new Promise((resolve) => {
    const out: Outcome<Res> = { headers: null, trailers: null }
    let settled = 0
    const done = () => {
      if (++settled === 2) resolve(out)
    }
    const call = method(
      req,
      opts.metadata ?? new grpc.Metadata(),
      opts.deadlineMs === undefined ? {} : { deadline: Date.now() + opts.deadlineMs },
      (err, res) => {
        if (err) out.err = err
        else out.res = res
        done()
      },
    )
    call.on('metadata', (md) => (out.headers = md))
    call.on('status', (s) => {
      out.trailers = s.metadata
      done()
    })
  })
}

/** Like {@link unary} but fails the test on error and returns the response. */
export async function ok<Req, Res>(t: Test, method: UnaryMethod<Req, Res>, req: Req): Promise<Res> {
  const o = await unary(method, req)
  if (o.err) t.fail(`unexpected ${grpc.status[o.err.code]}: ${o.err.details}`)
  return o.res as Res
}

/** Starts everything; closed at t's teardown. */
export async function grpcFixture(
  t: Test,
  db: TestDatabase,
  opts: { hub?: Omit<EventHubOptions, 'source'>; server?: Partial<GrpcServerOptions> } = {},
): Promise<GrpcFixture> {
  const fx = await serviceFixture(t, db, 'demo', opts.hub ? { hub: opts.hub } : {})
  const hub = fx.hub
  const server = await startGrpcServer({ service: fx.service, addr: '127.0.0.1:0', shutdownGraceMs: 500, ...opts.server })
  const target = `127.0.0.1:${server.port}`
  const { v1 } = loadApiProto()
  const opened: grpc.Client[] = []
  const newClients = (o: grpc.ChannelOptions = {}): Clients => {
    const creds = grpc.credentials.createInsecure()
    const c: Clients = {
      hosts: new v1.HostService(target, creds, o),
      inventory: new v1.InventoryService(target, creds, o),
      mdevs: new v1.MdevService(target, creds, o),
      desired: new v1.DesiredStateService(target, creds, o),
      events: new v1.EventService(target, creds, o),
      emulator: new v1.EmulatorService(target, creds, o),
    }
    opened.push(...Object.values(c))
    return c
  }
  // Teardowns run in reverse: clients first, then server and hub.
  t.teardown(async () => {
    await hub.close()
    await server.close()
  })
  const clients = newClients()
  t.teardown(() => {
    for (const c of opened) c.close()
  })
  return { ...fx, hub, grpc: server, target, clients, newClients }
}

/** Opens a Watch and records events, the final status and its trailers. */
export function openWatch(c: Clients, req: WatchRequest, md = new grpc.Metadata()) {
  const got: Event__Output[] = []
  const out: { status?: grpc.StatusObject; error?: grpc.ServiceError } = {}
  const call = c.events.Watch(req, md)
  call.on('data', (e: Event__Output) => got.push(e))
  call.on('error', (e: grpc.ServiceError) => (out.error = e))
  call.on('status', (s) => (out.status = s))
  return { call, got, out, seqs: () => got.map((e) => Number(e.seq)) }
}
