"""Fine-tuning jobs: LoRA training on labelled files + reviewer feedback, calibration, evaluation.

Imports from `server` (prompts, decoding plan, taxonomy, store) so training renders examples with
exactly the code that serves them; `server` never imports this package (its CLI loads our commands
through the `triage.commands` entry point).
"""
