"""Models, action tokenizers, datasets over the store, the LoRA recipe, checkpoints and the policy runtime.

Never imports Qt. torch is imported by the submodules that need it.
"""
