"""What to run on: data configs, sources (image, folder, JSONL, COCO, AMBER, shapes world), the one input
resolver every command uses, image decoding, and the synthetic shapes world.

``evolens.data.resolve.resolve_samples`` is the entry point: any ``images`` argument -> ``Sample`` rows.
"""
