"""Adapters to the outside world: one interface each, a local and a server backend."""
