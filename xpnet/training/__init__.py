"""The training loop: fit, the one step body, its device state, checkpoints, interrupts and callbacks."""
