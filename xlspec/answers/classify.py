"""``classify``: a classifier head's label distribution over the dataset's options.

The model is a sequence-classification head (``head = classifier``) whose config names its
labels (``id2label``: ``entailment``, ``neutral``, ``contradiction``).  The rendered prompt is
its input; each option text of the item must be one of the model's labels (compared without
case), and the option probabilities are the head's softmax renormalised over the options, so
``accuracy`` and the distribution metrics read it like ``options``.
"""

from .base import AnswerKind

CLASSIFY = AnswerKind(
    name="classify",
    summary="a classifier head's probability of each option text among the model's labels (NLI-style tasks)",
    provides={"choice": 3, "probs": 2},
    needs_options=True,
    engine_order=6,
    request_options="texts",
    head="classifier",
).register()
