"""One module per `nasbench` subcommand."""
