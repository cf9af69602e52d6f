"""Hallucination metrics, each with a loader for its benchmark's own file format.

- ``chair``: CHAIR_s / CHAIR_i on MSCOCO (instances annotations + the standard synonym list);
- ``amber``: AMBER's generative CHAIR, Cover, Hal and Cog;
- ``pope``: POPE yes/no accuracy, precision, recall, F1 and yes-ratio;
- ``shapes``: the shapes world's exact ground truth (the demo model's data);
- ``labels`` / ``association``: faithful vs hallucinated words and how trace metrics separate them.
"""
