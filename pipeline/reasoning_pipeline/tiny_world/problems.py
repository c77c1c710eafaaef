"""Seeded arithmetic problems with worked, column-by-column traces ending in `\\boxed{answer}`.

Every problem is addition, subtraction or a multiplication by one digit, asked either as a bare expression
or as a short word problem. The trace does the arithmetic one column at a time, the way a small model can
learn it (DESIGN §7: digit traces are what makes a sub-million-parameter model reliable).

Training and held-out problems come from disjoint halves of the problem space: whether a pair of operands
belongs to the held-out half is decided by a hash of the operation and operands, not by the random stream,
so no seed, count or wording can put a held-out problem into training data.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from reasoning_pipeline.boxed import last_boxed

PLACES = ("ones", "tens", "hundreds", "thousands", "ten-thousands", "hundred-thousands")
SUBJECT = "Prealgebra"
HELD_OUT_SHARE = 8  # one operand pair in eight belongs to the held-out half

Split = Literal["train", "held_out"]


class Operation(StrEnum):
    ADDITION = "addition"
    SUBTRACTION = "subtraction"
    MULTIPLICATION = "multiplication"

    @property
    def symbol(self) -> str:
        return {"addition": "+", "subtraction": "-", "multiplication": "×"}[self.value]

    @property
    def latex(self) -> str:
        return {"addition": "+", "subtraction": "-", "multiplication": "\\times"}[self.value]


@dataclass(frozen=True)
class Problem:
    operation: Operation
    left: int
    right: int
    question: str
    solution: str
    answer: str
    level: int

    @property
    def key(self) -> str:
        """What makes two problems the same, whatever their wording."""
        return f"{self.operation.value}:{self.left}:{self.right}"


@dataclass(frozen=True)
class Shape:
    """One kind of problem: the operation and how many digits each operand has."""

    operation: Operation
    left_digits: int
    right_digits: int
    level: int
    weight: float


# What the teacher is trained on: up to three digits. Subtraction borrows and multiplication carries, so
# there is more than one way for a briefly trained model to slip.
TAUGHT_SHAPES = (
    Shape(Operation.ADDITION, 2, 2, 1, 1.0),
    Shape(Operation.ADDITION, 3, 2, 2, 1.0),
    Shape(Operation.ADDITION, 3, 3, 2, 2.0),
    Shape(Operation.SUBTRACTION, 2, 2, 2, 1.0),
    Shape(Operation.SUBTRACTION, 3, 2, 3, 1.0),
    Shape(Operation.SUBTRACTION, 3, 3, 3, 1.5),
    Shape(Operation.MULTIPLICATION, 2, 1, 3, 0.7),
    Shape(Operation.MULTIPLICATION, 3, 1, 4, 0.5),
)
# Four-digit problems the teacher never saw: a small model does not carry the column method over to a
# longer number, so these are its hard problems (as olympiad problems were for QwQ), and they cap how
# often it is right whatever its training luck: the filter always has wrong traces to reject.
BEYOND_SHAPES = (
    Shape(Operation.ADDITION, 4, 3, 4, 0.5),
    Shape(Operation.ADDITION, 4, 4, 4, 0.5),
    Shape(Operation.SUBTRACTION, 4, 3, 5, 0.5),
    Shape(Operation.SUBTRACTION, 4, 4, 5, 0.5),
    Shape(Operation.MULTIPLICATION, 4, 1, 5, 0.5),
)
# The mix of the problem files (NuminaMath and MATH500 formats): about a fifth beyond the teacher.
SHAPES = TAUGHT_SHAPES + BEYOND_SHAPES

NAMES = ("Ada", "Ben", "Chen", "Dana", "Eli", "Fatima", "Gus", "Hana", "Ivan", "Jo", "Kemal", "Lena")
ITEMS = ("apples", "marbles", "stickers", "coins", "books", "shells", "pencils", "stamps")

EXPRESSION_TEMPLATES = (
    "What is ${left} {op} {right}$?",
    "Compute ${left} {op} {right}$.",
    "Evaluate ${left} {op} {right}$.",
    "Find the value of ${left} {op} {right}$.",
)
WORD_TEMPLATES: dict[Operation, tuple[str, ...]] = {
    Operation.ADDITION: (
        "{name} has {left} {items}. {name} gets {right} more {items}. How many {items} does {name} have now?",
        "A box holds {left} {items} and a bag holds {right} {items}. How many {items} are there altogether?",
        "{name} collected {left} {items} on Monday and {right} {items} on Tuesday. How many {items} "
        "did {name} collect in total?",
    ),
    Operation.SUBTRACTION: (
        "{name} has {left} {items} and gives away {right} of them. How many {items} does {name} have left?",
        "A shop had {left} {items} and sold {right}. How many {items} remain?",
        "{name} needs {left} {items} and already has {right}. How many more {items} does {name} need?",
    ),
    Operation.MULTIPLICATION: (
        "There are {right} bags with {left} {items} in each bag. How many {items} are there in total?",
        "{name} buys {right} packs of {items}, and each pack has {left} {items}. How many {items} does "
        "{name} buy?",
        "A shelf has {right} rows of {left} {items}. How many {items} are on the shelf?",
    ),
}


def digits_of(number: int) -> list[int]:
    """Digits from the ones place up."""
    return [int(character) for character in reversed(str(number))]


def _column_addition(left: int, right: int) -> list[str]:
    top, bottom = digits_of(left), digits_of(right)
    lines, carry, written = [], 0, ""
    for place in range(max(len(top), len(bottom))):
        a = top[place] if place < len(top) else 0
        b = bottom[place] if place < len(bottom) else 0
        total = a + b + carry
        written = f"{total % 10}{written}"
        lines.append(f"{PLACES[place]}:{a}+{b}+{carry}={total}, carry:{total // 10}, so far:{written}")
        carry = total // 10
    if carry:
        lines.append(f"{PLACES[max(len(top), len(bottom))]}: carry:{carry}, so far:{carry}{written}")
    return lines


def _column_subtraction(left: int, right: int) -> list[str]:
    top, bottom = digits_of(left), digits_of(right)
    lines, borrow, written = [], 0, ""
    for place, a in enumerate(top):
        b = bottom[place] if place < len(bottom) else 0
        if a - borrow >= b:
            difference, borrow_out = a - borrow - b, 0
            step = f"{a}-{borrow}-{b}={difference}"
        else:
            difference, borrow_out = 10 + a - borrow - b, 1
            step = f"{a}-{borrow}<{b},1{a}-{borrow}-{b}={difference}"
        written = f"{difference}{written}"
        lines.append(f"{PLACES[place]}:{step}, borrow:{borrow_out}, so far:{written}")
        borrow = borrow_out
    return lines


def _column_multiplication(left: int, right: int) -> list[str]:
    lines, carry, written = [], 0, ""
    top = digits_of(left)
    for place, a in enumerate(top):
        product = a * right + carry
        written = f"{product % 10}{written}"
        lines.append(
            f"{PLACES[place]}:{a}×{right}+{carry}={product}, carry:{product // 10}, so far:{written}"
        )
        carry = product // 10
    if carry:
        lines.append(f"{PLACES[len(top)]}: carry:{carry}, so far:{carry}{written}")
    return lines


def result_of(operation: Operation, left: int, right: int) -> int:
    if operation is Operation.ADDITION:
        return left + right
    if operation is Operation.SUBTRACTION:
        return left - right
    return left * right


def worked_solution(operation: Operation, left: int, right: int, *, boxed: bool = True) -> str:
    """The trace a teacher is trained to write: the operation, one line per column, the boxed result.

    Each column line ends with the digits written so far, so the answer is read off the line above it
    rather than reassembled from every line (one long-range lookup fewer for a tiny model to learn).
    """
    columns = {
        Operation.ADDITION: _column_addition,
        Operation.SUBTRACTION: _column_subtraction,
        Operation.MULTIPLICATION: _column_multiplication,
    }[operation](left, right)
    result = result_of(operation, left, right)
    expression = f"{left}{operation.symbol}{right}"
    return "\n".join(
        [
            f"{expression}, column by column from the ones:",
            *columns,
            f"The final answer is $\\boxed{{{result}}}$." if boxed else f"The final answer is {result}.",
        ]
    )


def is_held_out(operation: Operation, left: int, right: int) -> bool:
    digest = hashlib.sha256(f"{operation.value}:{left}:{right}".encode()).digest()
    return digest[0] % HELD_OUT_SHARE == 0


def _operand(rng: random.Random, digits: int) -> int:
    return rng.randint(10 ** (digits - 1) if digits > 1 else 2, 10**digits - 1)


def _draw(rng: random.Random, shape: Shape) -> tuple[int, int]:
    left, right = _operand(rng, shape.left_digits), _operand(rng, shape.right_digits)
    if shape.operation is Operation.SUBTRACTION and left < right:
        left, right = right, left
    return left, right


def _question(rng: random.Random, operation: Operation, left: int, right: int) -> str:
    if rng.random() < 0.5:
        return rng.choice(EXPRESSION_TEMPLATES).format(left=left, right=right, op=operation.latex)
    return rng.choice(WORD_TEMPLATES[operation]).format(
        left=left, right=right, name=rng.choice(NAMES), items=rng.choice(ITEMS)
    )


def generate_problems(
    count: int, *, seed: int, split: Split, stream: str, shapes: tuple[Shape, ...] = SHAPES
) -> list[Problem]:
    """`count` distinct problems of one split; the same arguments always give the same list.

    `stream` names what the problems are for (e.g. "teacher-training"), so independent uses of the same
    seed draw independent problems.
    """
    rng = random.Random(f"tiny-world/{stream}/{split}/{seed}")
    weights = [shape.weight for shape in shapes]
    problems: list[Problem] = []
    seen: set[str] = set()
    attempts = 0
    while len(problems) < count:
        attempts += 1
        if attempts > 100 * count + 1000:
            raise ValueError(f"cannot draw {count} distinct {split} problems from these shapes")
        shape = rng.choices(shapes, weights)[0]
        left, right = _draw(rng, shape)
        if is_held_out(shape.operation, left, right) != (split == "held_out"):
            continue
        key = f"{shape.operation.value}:{left}:{right}"
        if key in seen:
            continue
        seen.add(key)
        problems.append(
            Problem(
                operation=shape.operation,
                left=left,
                right=right,
                question=_question(rng, shape.operation, left, right),
                solution=worked_solution(shape.operation, left, right),
                answer=str(result_of(shape.operation, left, right)),
                level=shape.level,
            )
        )
    return problems


def is_correct(response: str, answer: str) -> bool:
    """The tiny world's own check: the last boxed value equals the integer answer."""
    boxed = last_boxed(response)
    if boxed is None:
        return False
    cleaned = re.sub(r"[\s,$]", "", boxed)
    return cleaned == answer
