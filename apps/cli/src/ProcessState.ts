/**
 * What the process exits with, decided by the commands and read by the
 * runtime's teardown in `bin.ts`.
 *
 * @since 0.1.0
 */

/**
 * @since 0.1.0
 */
export const processState = {
  /** The exit code after the command returned. */
  exitCode: 0,
  /** A worker stopped on a signal after a clean shutdown: exit 0, not 130. */
  stoppedCleanly: false
}
