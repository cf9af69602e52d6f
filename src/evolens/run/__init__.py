"""``evolens run``: data -> trace -> analyze -> experiments -> report, resumable, with a saved config."""
