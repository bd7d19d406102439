"""Task outputs: where they live and how they are written (atomically) and read back."""
