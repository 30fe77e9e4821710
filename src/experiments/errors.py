"""User-facing errors: one clear sentence, no traceback."""


class UserError(Exception):
    """A mistake in the user's input (config, CLI arguments, files). Printed as one line, exit code 2."""

    exit_code = 2
