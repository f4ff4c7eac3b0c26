"""``python -m advisor.cli``: the same as the ``peft-advise`` console script."""

from advisor.cli.main import main

main()
