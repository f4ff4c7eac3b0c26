"""Export PEFT adapters to plain LoRA, measure how faithful the export is, and check it for consumers.

Entry points: :func:`converters.convert.convert_adapter` (``peft-advise convert``),
:func:`converters.consumers.check_lora` / :func:`converters.consumers.fix_lora`
(``peft-advise check-lora``) and :func:`converters.coverage.coverage_table` (``convert --list``).
Everything heavy (torch, transformers, peft) is imported inside the functions that need it.
"""
