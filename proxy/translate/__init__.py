"""The translation core: pure functions and a streaming state machine, no I/O."""
