"""Instruction data from a scene: descriptions, colour/shape/count/position and yes/no existence questions.

Every generator takes a ``random.Random`` so a dataset is reproducible from a seed. Answers use a small,
fixed vocabulary that ``evolens.data.shapes.parse`` reads back.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from evolens.data.shapes.world import COLORS, SHAPES, Scene, ShapeObject

POSITION_PHRASES: dict[str, str] = {
    "top left": "in the top left corner",
    "top": "at the top",
    "top right": "in the top right corner",
    "left": "on the left",
    "center": "in the center",
    "right": "on the right",
    "bottom left": "in the bottom left corner",
    "bottom": "at the bottom",
    "bottom right": "in the bottom right corner",
}
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five")

DESCRIBE_PROMPTS = ("Describe this image.", "Describe the image.", "What is in this image?")
COLOR_PROMPTS = ("What is the color of the shape?", "What color is the shape?", "Which color is the shape?")
SHAPE_PROMPTS = ("What shape is in the image?", "What is the shape in the image?", "Which shape is shown?")
COUNT_PROMPTS = ("How many shapes are in the image?", "How many objects are there?", "Count the shapes.")
EXIST_PROMPTS = (
    "Is there a {color} {shape} in the image?",
    "Does the image contain a {color} {shape}?",
    "Can you see a {color} {shape}?",
)
POSITION_PROMPTS = ("Where is the {color} {shape}?", "Where is the {color} {shape} in the image?")
OBJECT_COLOR_PROMPTS = ("What color is the {shape}?", "What is the color of the {shape}?")


@dataclass(frozen=True)
class Turn:
    """One question and its ground-truth answer. ``task`` names the question type."""

    task: str
    question: str
    answer: str


def article(word: str) -> str:
    """'a' or 'an' for the word that follows."""
    return "an" if word[0] in "aeiou" else "a"


def object_phrase(obj: ShapeObject, with_size: bool = True) -> str:
    """'a large red circle' / 'an orange star'."""
    words = f"{obj.size} {obj.color} {obj.shape}" if with_size else f"{obj.color} {obj.shape}"
    return f"{article(words)} {words}"


def count_phrase(n: int) -> str:
    """'a single shape', 'two shapes', 'three shapes'."""
    return "a single shape" if n == 1 else f"{NUMBER_WORDS[n]} shapes"


def describe(scene: Scene, rng: random.Random) -> str:
    """A caption of several sentences: how many shapes, each one's size, colour, shape and position, and the
    background. Objects are described in reading order."""
    n, background = len(scene.objects), scene.background.phrase
    style = rng.randrange(3)
    if style == 0:
        head = f"The image shows {count_phrase(n)} on {article(background)} {background} background."
        body = [f"{_capital(object_phrase(o))} is {POSITION_PHRASES[o.position]}." for o in scene.objects]
        return " ".join([head, *body])
    if style == 1:
        verb = "is" if n == 1 else "are"
        head = f"There {verb} {count_phrase(n)} in this picture."
        body = [
            f"{_capital(POSITION_PHRASES[o.position])} there is {object_phrase(o)}." for o in scene.objects
        ]
        return " ".join([head, *body, f"The background is {background}."])
    head = f"This picture has {count_phrase(n)} on {article(background)} {background} background."
    body = [f"I can see {object_phrase(o)} {POSITION_PHRASES[o.position]}." for o in scene.objects]
    return " ".join([head, *body])


def color_turn(scene: Scene, rng: random.Random) -> Turn:
    """'What is the color of the shape?' -> 'The shape is red.' (single-object scenes)."""
    obj = _single(scene)
    return Turn("color", rng.choice(COLOR_PROMPTS), f"The shape is {obj.color}.")


def shape_turn(scene: Scene, rng: random.Random) -> Turn:
    """'What shape is in the image?' -> 'It is a circle.' (single-object scenes)."""
    obj = _single(scene)
    return Turn("shape", rng.choice(SHAPE_PROMPTS), f"It is {article(obj.shape)} {obj.shape}.")


def count_turn(scene: Scene, rng: random.Random) -> Turn:
    """'How many shapes are in the image?' -> 'There are two shapes.'"""
    n = len(scene.objects)
    answer = "There is one shape." if n == 1 else f"There are {NUMBER_WORDS[n]} shapes."
    return Turn("count", rng.choice(COUNT_PROMPTS), answer)


def exist_turn(scene: Scene, rng: random.Random, present: bool | None = None) -> Turn:
    """'Is there a green triangle in the image?' with a yes (present) or no answer.

    Negatives are hard half of the time: a shape that is in the scene in another colour, or a colour that is
    in the scene on another shape.
    """
    present = rng.random() < 0.5 if present is None else present
    if present:
        obj = rng.choice(scene.objects)
        color, shape = obj.color, obj.shape
        answer = f"Yes, there is {object_phrase(obj, with_size=False)} {POSITION_PHRASES[obj.position]}."
    else:
        color, shape = absent_object(scene, rng)
        words = f"{color} {shape}"
        answer = f"No, there is no {words} in the image."
    question = rng.choice(EXIST_PROMPTS).format(color=color, shape=shape)
    return Turn("exist_yes" if present else "exist_no", question, answer)


def absent_object(scene: Scene, rng: random.Random) -> tuple[str, str]:
    """A (colour, shape) not in the scene: a hard negative (shares the colour or the shape of an object)
    with probability 2/3, otherwise any absent pair."""
    kind = rng.randrange(3)
    anchor = rng.choice(scene.objects)
    while True:
        color = anchor.color if kind == 1 else rng.choice(list(COLORS))
        shape = anchor.shape if kind == 0 else rng.choice(SHAPES)
        if not scene.has(color, shape):
            return color, shape


def position_turn(scene: Scene, rng: random.Random) -> Turn:
    """'Where is the red circle?' -> 'The red circle is in the top left corner.'"""
    obj = rng.choice(scene.objects)
    question = rng.choice(POSITION_PROMPTS).format(color=obj.color, shape=obj.shape)
    return Turn("position", question, f"The {obj.name} is {POSITION_PHRASES[obj.position]}.")


def object_color_turn(scene: Scene, rng: random.Random) -> Turn | None:
    """'What color is the star?' -> 'The star is blue.' for a shape that occurs once; None if none does."""
    unique = [o for o in scene.objects if sum(p.shape == o.shape for p in scene.objects) == 1]
    if not unique:
        return None
    obj = rng.choice(unique)
    question = rng.choice(OBJECT_COLOR_PROMPTS).format(shape=obj.shape)
    return Turn("object_color", question, f"The {obj.shape} is {obj.color}.")


def describe_turn(scene: Scene, rng: random.Random) -> Turn:
    """'Describe this image.' -> ``describe``."""
    return Turn("describe", rng.choice(DESCRIBE_PROMPTS), describe(scene, rng))


def conversation(scene: Scene, rng: random.Random, n_turns: int = 3) -> list[Turn]:
    """A training conversation about one scene: a description and questions, in random order.

    Single-object scenes get colour and shape questions; every scene gets existence questions (yes and no
    equally often), counting, positions and per-object colours.
    """
    pool: list[Turn] = [describe_turn(scene, rng), exist_turn(scene, rng, present=rng.random() < 0.5)]
    if len(scene.objects) == 1:
        pool += [color_turn(scene, rng), shape_turn(scene, rng)]
    else:
        pool += [t for t in (object_color_turn(scene, rng),) if t is not None]
        pool.append(exist_turn(scene, rng))
    pool += [count_turn(scene, rng), position_turn(scene, rng)]
    rng.shuffle(pool)
    return pool[:n_turns]


def _single(scene: Scene) -> ShapeObject:
    if len(scene.objects) != 1:
        raise ValueError(f"scene {scene.seed} has {len(scene.objects)} objects; this question needs one")
    return scene.objects[0]


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]
