"""Command line and orchestration: cli, run, demo. The only layer that parses arguments."""
