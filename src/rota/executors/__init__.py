"""Running task attempts somewhere: in this process, in threads, or in a pool of warm processes."""
