"""One argparse adapter per subcommand: configure_parser(p) and main(args) -> exit code."""
