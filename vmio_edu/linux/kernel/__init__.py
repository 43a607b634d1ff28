"""kernel/ (Linux v3.7): the core kernel, as far as the I/O path meets it (the scheduler's tick)."""
