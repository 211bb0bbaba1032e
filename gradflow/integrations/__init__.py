"""gradflow.watch inside the trainers people use: `gradflow.integrations.lightning` (a Lightning
Callback) and `gradflow.integrations.transformers` (a Hugging Face TrainerCallback).

Each module imports its library when it is imported itself, never when gradflow is; without the
library, its GradFlowCallback raises a one-line ImportError that says what to install.
"""
