/**
 * Loading of `proto/apmatrix/hostbus/v1/hostbus.proto` (the sysfs face every remote host offers: an
 * `apmatrix agent` or an `apmatrix emulator serve`) and the shapes its messages take in JavaScript under
 * the loader options below (keepCase, uint64 as decimal strings, defaults filled in, the set member of a
 * oneof named in the oneof's field).
 */
import path from 'node:path'
import * as grpc from '@grpc/grpc-js'
import * as protoLoader from '@grpc/proto-loader'
import { projectRoot } from '../paths.js'

/** The proto file, resolved from the project root so src/ (tests) and dist/ (built) both find it. */
export const HOSTBUS_PROTO_FILE = path.join(projectRoot, 'proto/apmatrix/hostbus/v1/hostbus.proto')

/** The fully qualified service name (health status key, reflection, Info.services). */
export const HOSTBUS_SERVICE_NAME = 'apmatrix.hostbus.v1.HostBus'

/** The gRPC loader options of every apmatrix proto (toolchain: keepCase, longs and enums as strings). */
export const PROTO_LOADER_OPTIONS: protoLoader.Options = { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true }

/** The package definition (for reflection) and the generated client/service constructor. */
export interface HostBusProto {
  definition: protoLoader.PackageDefinition
  HostBus: grpc.ServiceClientConstructor
}

let cached: HostBusProto | undefined

/** Loads the proto once per process. */
export function loadHostBusProto(): HostBusProto {
  if (!cached) {
    const definition = protoLoader.loadSync(HOSTBUS_PROTO_FILE, PROTO_LOADER_OPTIONS)
    const pkg = grpc.loadPackageDefinition(definition) as unknown as {
      apmatrix: { hostbus: { v1: { HostBus: grpc.ServiceClientConstructor } } }
    }
    cached = { definition, HostBus: pkg.apmatrix.hostbus.v1.HostBus }
  }
  return cached
}

/** uint64 fields arrive as decimal strings (longs: String) and may be sent as numbers. */
export type WireU64 = string | number

/** InfoResponse. */
export interface WireInfo {
  driver: string
  machine_id: string
  boot_id: string
  kernel: string
  profile: string
  services: string[]
  config_lock: string
  hostname: string
  sysfs_root: string
  version: string
}

/** Event. */
export interface WireEvent {
  seq: WireU64
  time: number
  kind: string
  boot_id: string
  epoch: string
  body?: 'uevent' | 'log' | 'apcb' | 'request' | 'changed'
  uevent?: { action: string; devpath: string; env: Record<string, string> } | null
  log?: { level: string; message: string } | null
  apcb?: { uuid: string; guest: string; apm: string; aqm: string; adm: string } | null
  request?: { apqn: string; result: string } | null
  changed?: { source: string; summary: string } | null
}

/** WriteLogEntry. */
export interface WireWriteLogEntry {
  seq: WireU64
  wall_time_ms: number
  path: string
  value: string
  fence_host: string
  fence_holder: string
  fence_token: WireU64
  errno: string
  boot_id: string
  fence_refused: boolean
  origin: string
}

/** WriteLogResponse. */
export interface WireWriteLog {
  entries: WireWriteLogEntry[]
  first_seq: WireU64
  last_seq: WireU64
  highest_token: Record<string, WireU64>
}

/** LockResponse. */
export interface WireLockGrant {
  session: string
  lock_path: string
  holder_pid: number
  max_hold_ms: number
}

/** Request metadata key naming the lock session of a Write. */
export const LOCK_SESSION_METADATA_KEY = 'x-apmatrix-lock'
