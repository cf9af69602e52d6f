"""``evolens run`` and ``evolens analyze``: configs, the stages of a run, orchestration and resume."""
