"""Maintainer-only code of the demo VLM, kept out of the installed package: its training recipe
(``training``, needs the ``peft`` dev dependency; ``scripts/train_demo.py``) and its quality evaluation
(``quality``; ``scripts/eval_demo.py``). Loading and using the demo needs neither."""
