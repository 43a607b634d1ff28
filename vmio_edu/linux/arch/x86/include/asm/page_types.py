"""arch/x86/include/asm/page_types.h (Linux v3.7): the x86 page size."""

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
