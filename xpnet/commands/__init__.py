"""One module per `xpnet` subcommand: set up, run, print."""
