/**
 * errand: a task queue and workflow engine for Effect.
 *
 * @since 0.1.0
 */

/** Periodic tasks with one leader among many processes. */
export * as Beat from "./Beat.ts"
/** Typed, durable workflows: chain, group, chord. */
export * as Canvas from "./Canvas.ts"
/** Producing tasks: submit, await, status, revoke. */
export * as Client from "./Client.ts"
/** The broker service and its batched, fenced operations. */
export * as Broker from "./Broker.ts"
/** The result backend service. */
export * as ResultBackend from "./ResultBackend.ts"
/** The tagged errors of errand. */
export * as Errors from "./Errors.ts"
/** The in-memory broker and result backend. */
export * as MemoryBroker from "./MemoryBroker.ts"
/** The wire format: messages, records, attempts. */
export * as Message from "./Message.ts"
/** Retry policies built from Schedules. */
export * as Retry from "./Retry.ts"
/** Task definitions and implementations. */
export * as Task from "./Task.ts"
/** Workers. */
export * as Worker from "./Worker.ts"
export {
  BrokerError,
  MalformedMessage,
  MaxRetriesExceeded,
  PayloadInvalid,
  RetryRequested,
  SoftTimeLimitExceeded,
  TaskDefect,
  TaskNotFound,
  TaskRevoked,
  TimeLimitExceeded,
  UnknownTask,
  WorkerLost,
  WorkerShutdown
} from "./Errors.ts"
/** The running task's context (`yield* TaskContext` in a handler). */
export { TaskContext } from "./TaskContext.ts"
