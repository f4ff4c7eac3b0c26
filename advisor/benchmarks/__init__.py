"""The benchmark knowledge base: PEFT method-comparison results, imported into a snapshot."""
