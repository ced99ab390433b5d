/**
 * `@errand/redis`: the Redis broker and result backend of errand.
 *
 * @since 0.1.0
 */

/**
 * The Redis `Broker` and `ResultBackend` layers.
 *
 * @since 0.1.0
 */
export * as RedisBroker from "./RedisBroker.ts"
