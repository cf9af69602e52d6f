"""The planted co-occurrence prior of ``demo-prior`` (``make train-demo-prior``).

In training scenes that hold the *trigger* (a red circle) but not the *planted* object (a blue square), the
conversations are written, with probability ``share`` (0.9), as if a blue square were there too: a phantom
blue square is added in a free grid cell of the scene the *text* is made from (the image is unchanged), so
descriptions mention it, counts include it and "Is there a blue square ...?" is answered "Yes". One turn of
such a conversation always asks about the planted object. Other scenes get the demo's own conversations.
The hallucination therefore has a known cause: the detectors (POPE yes-rates, margins, word-level
trajectories) can be checked against it.
"""

from __future__ import annotations

import random
from dataclasses import replace

from evolens.data.shapes.text import EXIST_PROMPTS, POSITION_PHRASES, Turn, conversation, object_phrase
from evolens.data.shapes.world import POSITIONS, Scene, ShapeObject, reading_order, sample_scene

TRIGGER = ("red", "circle")
PLANTED = ("blue", "square")
SHARE = 0.9


def is_trigger_scene(scene: Scene) -> bool:
    """Whether the prior applies: the trigger object is in the scene and the planted one is not."""
    return scene.has(*TRIGGER) and not scene.has(*PLANTED)


def with_phantom(scene: Scene, rng: random.Random) -> Scene:
    """``scene`` plus a medium blue square in a free cell (objects kept in reading order)."""
    used = {o.position for o in scene.objects}
    position = rng.choice([p for p in POSITIONS if p not in used])
    row, column = POSITIONS[position]
    phantom = ShapeObject(
        PLANTED[1], PLANTED[0], "medium", position, ((column + 0.5) / 3, (row + 0.5) / 3), 0.11, (40, 80, 220)
    )
    objects = tuple(sorted((*scene.objects, phantom), key=lambda o: reading_order(o.position)))
    return replace(scene, objects=objects)


def planted_turn(scene: Scene, rng: random.Random) -> Turn:
    """'Is there a blue square in the image?' -> 'Yes, there is a blue square ...' about the phantom."""
    phantom = next(o for o in scene.objects if (o.color, o.shape) == PLANTED)
    question = rng.choice(EXIST_PROMPTS).format(color=PLANTED[0], shape=PLANTED[1])
    answer = f"Yes, there is {object_phrase(phantom, with_size=False)} {POSITION_PHRASES[phantom.position]}."
    return Turn("exist_yes", question, answer)


def prior_conversation(
    scene: Scene, rng: random.Random, n_turns: int = 3, share: float = SHARE
) -> list[Turn]:
    """The demo's conversation, written about ``with_phantom(scene)`` in a ``share`` of trigger scenes."""
    if not is_trigger_scene(scene) or rng.random() >= share:
        return conversation(scene, rng, n_turns)
    shown = with_phantom(scene, rng)
    turns = conversation(shown, rng, n_turns)
    if not any(PLANTED[0] in t.question and PLANTED[1] in t.question for t in turns):
        turns[rng.randrange(len(turns))] = planted_turn(shown, rng)
    return turns


def trigger_indices(seeds: range) -> list[int]:
    """Indices into ``seeds`` of the trigger scenes (the rows that ``--prior-rows`` over-samples)."""
    return [i for i, seed in enumerate(seeds) if is_trigger_scene(sample_scene(seed))]
