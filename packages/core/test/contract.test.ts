import { MemoryBroker } from "@errand/core"
import * as BrokerContract from "@errand/core/testing/BrokerContract"

BrokerContract.suite("memory", MemoryBroker.layer)
BrokerContract.suite("memory, storeResult: false", MemoryBroker.layer, { messages: { storeResult: false } })
