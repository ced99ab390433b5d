/**
 * The headers of a message submitted with none: one frozen empty object,
 * shared by every such message. Nothing can be added to it, so a worker
 * that meets it knows its headers are valid without walking them (a
 * `for…in` over an empty object cost a few hundred instructions per task).
 *
 * @internal
 */
export const noHeaders: Readonly<Record<string, string>> = Object.freeze({})

/**
 * The header a canvas member's message carries: the id of its canvas
 * (`Canvas.canvasHeader`).
 *
 * @internal
 */
export const canvasHeader = "x-errand-canvas" as const

/**
 * The header a Beat run's message carries: its beat and entry
 * (`Beat.entryHeader`).
 *
 * @internal
 */
export const beatHeader = "x-errand-beat" as const
