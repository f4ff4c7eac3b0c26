"""peft-advisor: choose, trial, convert and survey PEFT methods.

The package root stays import-light on purpose: ``peft-advise --vram 24 --task math`` must
answer in a fraction of the time ``import peft`` takes, so nothing here imports torch,
transformers or peft. Heavy modules are imported inside the functions that need them.
"""

__version__ = "0.1.0"
