"""A toy ML package: the iris pipeline's stages. Knows nothing of DVC or Prefect."""


class InputError(ValueError):
    """A bad input file (params or data); the message is one line naming the file and the problem."""
