#!/usr/bin/env node
// The `errand` command. Registers tsx, so the CLI and the tasks modules it
// loads can be TypeScript of any flavour, then runs src/bin.ts (which turns on
// Node's compile cache and starts the CLI). Needs Node >= 22.15 (24 in this
// repository).
import { register } from "tsx/esm/api"

register()
await import("../src/bin.ts")
