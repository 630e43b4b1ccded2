"""The `mhp` subcommands, one module per room: each exposes ``register(subparsers)``."""
