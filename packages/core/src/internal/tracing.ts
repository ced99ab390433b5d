/**
 * When errand makes spans: only where something can see them.
 *
 * @internal
 */
import { Effect, type Fiber, Tracer } from "effect"

/**
 * Whether the fiber's work gets spans: a tracer is installed (anything but
 * Effect's default in-memory `nativeTracer`), or the fiber runs in a span
 * (there is a trace to continue).
 *
 * @internal
 */
export const traced = (fiber: Fiber.Fiber<unknown, unknown>): boolean => {
  const cache = fiber.cache
  return (cache.tracer !== undefined && cache.tracer !== Tracer.nativeTracer) || cache.span !== undefined
}

/**
 * `Effect.withSpan(name, options)` when the fiber is `traced`; otherwise the
 * effect as it is. Without a tracer or a trace a span is seen by nothing,
 * and it costs more than the rest of a short broker call: on Redis a single
 * submit allocated ~2 KB for its span and the context switches around it.
 * The span captures no stack trace: the per-batch ones would pay for it on
 * every batch.
 *
 * @example
 * ```ts
 * broker.enqueue(batch).pipe(withSpanIfTraced("RedisBroker.enqueue", { attributes: { size: batch.length } }))
 * ```
 *
 * @internal
 */
export const withSpanIfTraced = (name: string, options: Tracer.SpanOptionsNoTrace) =>
<A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.withFiber((fiber) =>
    traced(fiber) ? effect.pipe(Effect.withSpan(name, options, { captureStackTrace: false })) : effect
  )
