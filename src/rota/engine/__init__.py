"""Deciding what runs next: the runner drives one run; the scheduler daemon comes later."""
