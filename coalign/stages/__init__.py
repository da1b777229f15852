"""Pure stages: arrays and records in, new arrays and records out. No I/O, no printing, no plotting."""
