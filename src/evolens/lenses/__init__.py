"""Lenses: each layer's hidden state read as a next-token distribution, and everything that makes one.

- ``logit``: the ``Lens`` protocol (``name``, ``unembed``, ``layer_logits(states)``) and the logit lens,
  ``normed`` (unembedding(final_norm(h)), correct) or ``raw`` (the paper's);
- ``tuned``: the tuned lens (one affine translator per layer, the ``tuned-lens`` file format);
- ``spec``: ``--lens`` strings ("normed", "raw", "tuned", "tuned:PATH") parsed without torch, turned into
  a ``Lens`` for one model (``make_lens``), and what meta.json records of it;
- ``states`` and ``training``: collecting a model's hidden states on its own generations and training a
  tuned lens on them (``evolens train-lens``).

Every lens ends with the model's own readout, ``evolens.models.readout.Unembed``. The trace engine
(``evolens.tracing``) and every analysis take any object satisfying ``Lens``.
"""
