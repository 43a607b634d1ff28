"""kernel/sched/ (Linux v3.7): the process scheduler."""
