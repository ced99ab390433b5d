/**
 * Runs the billing example on the memory broker with the real clock: three
 * orders, a gateway that is down for the first try of each, and the ledger
 * printed at the end.
 */
import { Effect, Layer, References } from "effect"
import { Client, MemoryBroker, Worker } from "@errand/core"
import { Charge, ChargeLive, Gateway, Ledger } from "./Billing.ts"

const program = Effect.gen(function*() {
  const client = yield* Client.Client
  const ledger = yield* Ledger
  const orders = [{ orderId: "o-1", cents: 500 }, { orderId: "o-2", cents: 1250 }, { orderId: "o-3", cents: 99 }]
  const jobs = yield* Effect.forEach(orders, (order) => client.submit(Charge, order))
  yield* Effect.log("submitted 3 charges; the gateway is down for each one's first try, so each retries after 10 s")
  for (const job of jobs) {
    const { receipt } = yield* client.await(job)
    const status = yield* client.status(job.id)
    yield* Effect.log(`${job.id}: ${receipt} after ${status.retries} ${status.retries === 1 ? "retry" : "retries"}`)
  }
  for (const entry of yield* ledger.entries) {
    yield* Effect.log(`ledger: ${entry.orderId} ${entry.cents}c ${entry.receipt} (attempt ${entry.attempt} on ${entry.worker})`)
  }
})

const Services = Layer.mergeAll(Ledger.layer, Gateway.layer({ unavailable: 1 }))
const App = Layer.mergeAll(Client.layer, Worker.layer({ tasks: [ChargeLive], concurrency: 4 })).pipe(
  Layer.provideMerge(MemoryBroker.layer),
  Layer.provideMerge(Services)
)

Effect.runPromise(program.pipe(Effect.provide(App), Effect.provideService(References.MinimumLogLevel, "Info")))
