"""Run: ``python -m training`` to train, export and evaluate the classifier."""

from training.cli import main

main()
