"""A toy ML package: the iris pipeline's stages. Knows nothing of DVC or Prefect."""
