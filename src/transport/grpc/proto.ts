/**
 * Loading of `proto/apmatrix/v1/*.proto` and of the standard health proto, with the options the
 * generated types (scripts/gen-grpc-types.mjs) assume: snake_case fields kept, 64-bit integers as
 * decimal strings, enums as names, defaults filled in, the set member of a oneof named.
 */
import fs from 'node:fs'
import path from 'node:path'
import * as grpc from '@grpc/grpc-js'
import * as protoLoader from '@grpc/proto-loader'
import { projectRoot } from '../../paths.js'
import type { ProtoGrpcType as AuthProto } from '../../generated/grpc/auth_service.js'
import type { ProtoGrpcType as DesiredProto } from '../../generated/grpc/desired_state_service.js'
import type { ProtoGrpcType as EmulatorProto } from '../../generated/grpc/emulator_service.js'
import type { ProtoGrpcType as EventProto } from '../../generated/grpc/event_service.js'
import type { ProtoGrpcType as HostProto } from '../../generated/grpc/host_service.js'
import type { ProtoGrpcType as InventoryProto } from '../../generated/grpc/inventory_service.js'
import type { ProtoGrpcType as MdevProto } from '../../generated/grpc/mdev_service.js'

/** Folder holding `apmatrix/v1/*.proto` (the include root). */
export const PROTO_ROOT = path.join(projectRoot, 'proto')

/** The API's proto files, relative to {@link PROTO_ROOT}. */
export const API_PROTO_FILES: string[] = fs
  .readdirSync(path.join(PROTO_ROOT, 'apmatrix/v1'))
  .filter((f) => f.endsWith('.proto'))
  .sort()
  .map((f) => `apmatrix/v1/${f}`)

/** Loader options; must match the flags of scripts/gen-grpc-types.mjs. */
export const LOADER_OPTIONS: protoLoader.Options = { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true, includeDirs: [PROTO_ROOT] }

/** Fully qualified names of the API services (health keys, reflection). */
export const API_SERVICES = [
  'apmatrix.v1.HostService',
  'apmatrix.v1.InventoryService',
  'apmatrix.v1.MdevService',
  'apmatrix.v1.DesiredStateService',
  'apmatrix.v1.EventService',
  'apmatrix.v1.EmulatorService',
  'apmatrix.v1.AuthService',
] as const

/** The loaded API: the package definition (for reflection) and the typed `apmatrix.v1` namespace. */
export interface ApiProto {
  definition: protoLoader.PackageDefinition
  v1: HostProto['apmatrix']['v1'] &
    InventoryProto['apmatrix']['v1'] &
    MdevProto['apmatrix']['v1'] &
    DesiredProto['apmatrix']['v1'] &
    EventProto['apmatrix']['v1'] &
    EmulatorProto['apmatrix']['v1'] &
    AuthProto['apmatrix']['v1']
}

let cached: ApiProto | undefined

/** Loads the API protos once per process (servers and test clients share it). */
export function loadApiProto(): ApiProto {
  if (!cached) {
    const definition = protoLoader.loadSync(API_PROTO_FILES, LOADER_OPTIONS)
    const pkg = grpc.loadPackageDefinition(definition) as unknown as { apmatrix: { v1: ApiProto['v1'] } }
    cached = { definition, v1: pkg.apmatrix.v1 }
  }
  return cached
}
