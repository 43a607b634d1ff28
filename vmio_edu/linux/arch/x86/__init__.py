"""arch/x86 (Linux v3.7)."""
