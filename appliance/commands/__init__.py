"""One module per `si` subcommand; each defines register(subparsers)."""
