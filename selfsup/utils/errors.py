"""Exceptions that the command line maps to its exit codes (see README, "Exit codes")."""


class SelfSupError(Exception):
    """A runtime problem the user can act on: printed as one line, exit code 1."""

    exit_code = 1


class ConfigError(SelfSupError):
    """A bad flag, config file or value: exit code 2, like argparse's usage errors."""

    exit_code = 2


class NonFiniteLossError(SelfSupError):
    """Training produced a NaN or infinite loss: exit code 3, last good checkpoint kept."""

    exit_code = 3
