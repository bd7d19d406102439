"""Pure values: the graph, task specs, the state machine, policies. No I/O."""
