"""`python -m models.toy.train`: rebuild the toy models (see the package's docstring)."""

from models.toy.train import main

main()
