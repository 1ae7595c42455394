"""The one exception type for mistakes a user can fix (bad game, bad step size, bad file)."""


class GamesimError(ValueError):
    """A user error. The message names the problem and how to fix it; the CLI prints it alone."""
