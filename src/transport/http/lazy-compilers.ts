/**
 * Schema compilers that compile on first use. fastify compiles every route's validators and response
 * serializers when the app starts (fast-json-stringify and TypeBox code generation: about 0.2 CPU-s for
 * this API on every start); most processes answer a handful of routes, and a CLI-started service should
 * be serving before it has compiled routes nobody called. Each route's function is compiled on its first
 * request and kept. {@link compileAllSchemas} compiles the rest at once (tests prove every schema compiles).
 */
import { SerializerSelector } from '@fastify/fast-json-stringify-compiler'
import { TypeBoxValidatorCompiler } from '@fastify/type-provider-typebox'
import type { FastifyInstance, FastifySchemaCompiler, FastifySerializerCompiler } from 'fastify'

const pending = new WeakMap<object, Array<() => unknown>>()

/** The compile thunks of one app, registered by its factories below. */
export function lazyCompilers(): {
  buildSerializer: (externalSchemas: unknown, serializerOpts: unknown) => FastifySerializerCompiler<unknown>
  validatorCompiler: FastifySchemaCompiler<unknown>
  /** Ties the thunks to `app` for {@link compileAllSchemas}. */
  attach(app: FastifyInstance): void
} {
  const thunks: Array<() => unknown> = []
  const eager = SerializerSelector()
  return {
    buildSerializer(externalSchemas, serializerOpts) {
      const compile = (eager as (s: unknown, o: unknown) => FastifySerializerCompiler<unknown>)(externalSchemas, serializerOpts)
      return (route) => {
        let fn: ((data: unknown) => string) | undefined
        const get = () => (fn ??= compile(route))
        thunks.push(get)
        return (data) => get()(data)
      }
    },
    validatorCompiler(route) {
      let fn: ReturnType<FastifySchemaCompiler<unknown>> | undefined
      const get = () => (fn ??= TypeBoxValidatorCompiler(route as Parameters<typeof TypeBoxValidatorCompiler>[0]))
      thunks.push(get)
      return (data: unknown) => (get() as (d: unknown) => unknown)(data)
    },
    attach(app) {
      pending.set(app, thunks)
    },
  } as ReturnType<typeof lazyCompilers>
}

/** Compiles every validator and serializer of `app` now (after `ready()`); resolves to how many. Throws what a compile throws. */
export function compileAllSchemas(app: FastifyInstance): number {
  const thunks = pending.get(app) ?? []
  for (const f of thunks) f()
  return thunks.length
}
