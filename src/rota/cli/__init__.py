"""The command line: parse, call the engine and store, render. Nothing imports it."""
