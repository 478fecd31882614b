"""Pure decisions and the value types they work on.

Nothing in this package does I/O or imports anything outside the standard library: drivers
import the event types from here, the daemon imports the decisions, and a test can exercise
every rule without a reader, a broker or a disk.
"""
