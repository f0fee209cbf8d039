"""Class counting: predict how many distinct classes a set of 16 images contains.

Following Equilibrium Aggregation (Bartunov, Fuchs and Lillicrap, UAI 2022), each set contains
16 images of 1 to 10 distinct character classes. Every image is encoded by a convolutional
ResNet (`ConvEncoder`: channels [16, 32, 64], 3x3 filters with stride 2, a linear projection
to D = 256), the encodings are pooled into D dimensions by sum, 4-head attention or
equilibrium aggregation, and a fully connected ResNet of layer sizes [128, 10] outputs the
logits of a softmax over the counts 1..10. The loss is the cross-entropy and the metric is
the accuracy of the most likely count. The paper's equilibrium aggregation uses the
sum-of-squares potential of widths [512, 512, 32] and 10 gradient-descent steps (pass
`--solver-steps 10`; the command-line default is 5), and trains with batches of 8 sets.

Data: by default scikit-learn's handwritten digits, which ship with scikit-learn (10
classes, train and test splits of different images of the same classes). With
`--data-dir ROOT`, an Omniglot folder with `images_background/` for the training classes and
`images_evaluation/` for the test classes, as in the paper.
"""

from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float, Int, PRNGKeyArray, Scalar

from eqagg_implicit import EquilibriumAggregation, L2Regulariser, SumOfSquaresResNetPotential
from eqagg_implicit.data.counting import sample_counting_batch
from eqagg_implicit.data.omniglot import ImageClassDataset, load_digits_dataset, load_omniglot
from eqagg_implicit.models import ConvEncoder, ResNetMLP, SetModel
from eqagg_implicit.training import AbstractTask, TaskOptions, build_adjoint, build_pooling, build_solver

DEFAULT_LATENT_SIZE = 256
DEFAULT_HIDDEN_SIZE = 512
DEFAULT_SET_SIZE = 16
DEFAULT_MAX_COUNT = 10
DEFAULT_EVAL_SIZE = 1000
EVAL_CHUNK_SIZE = 100
IMAGE_SIZE = 32

# Evaluation sets use their own seeds, so they never coincide with a training batch, whose
# generator is seeded by [seed, step].
_SPLIT_SEEDS = {"train_images": 2_000_001, "test": 2_000_002}
# The image split that each evaluation split samples from.
_SPLIT_IMAGES = {"train_images": "train", "test": "test"}
_EXTRA_OPTIONS = ("set_size", "max_count")


def build_sum_of_squares_equilibrium(
    options: TaskOptions,
    input_size: int,
    output_size: int,
    potential_sizes: Sequence[int],
    *,
    key: PRNGKeyArray,
) -> EquilibriumAggregation:
    """Build equilibrium aggregation with a sum-of-squares ResNet potential, whatever the solver.

    `build_pooling` gives first-order solvers a scalar-head potential; the counting and
    molecular configurations of the paper square and sum the last layer's outputs instead.

    **Arguments:**

    - `options`: supplies the solver, the adjoint, `solver_steps` and `tolerance`.
    - `input_size`, `output_size`: the element size d and the aggregate size M.
    - `potential_sizes`: the potential's layer widths, such as [512, 512, 32].
    - `key`: a JAX PRNG key for the initial weights.

    **Returns:** the layer, with the learnable L2 regulariser.
    """
    potential = SumOfSquaresResNetPotential(input_size, output_size, tuple(potential_sizes), key=key)
    return EquilibriumAggregation(
        potential,
        L2Regulariser(),
        build_solver(options.solver, options.solver_steps, options.tolerance),
        build_adjoint(options.adjoint, options.solver_steps),
    )


def counting_loss(logits: Float[Array, "b k"], target: Int[Array, " b"]) -> tuple[Scalar, Scalar]:
    """Compute the mean cross-entropy and the accuracy of count logits.

    **Arguments:**

    - `logits`: one row of K logits per set, for the counts 1..K.
    - `target`: the true count minus one, in 0..K-1.

    **Returns:** `(cross_entropy, accuracy)`, both averaged over the sets.
    """
    cross_entropy = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, target))
    accuracy = jnp.mean(jnp.argmax(logits, axis=-1) == target)
    return cross_entropy, accuracy


class CountingTask(AbstractTask):
    """The class-counting task on sets of images.

    Options: `aggregation` is sum, attention or equilibrium (mean and max also work), and
    `latent_size` is D (default 256). `hidden_size` is H (default 512): the potential has the
    widths [H, H, 32] and the output network [H / 4, K], so the default gives [128, 10].
    `eval_size` is the number of sets per evaluation split (default 1000), and `data_dir` is
    an Omniglot root. `--option set_size=N` and `--option max_count=K` change the set size (16)
    and the largest count (10).

    The evaluation splits are "train_images" (a fixed sample of sets from the training
    images) and "test" (sets from the test images), which are the two curves of the paper's
    counting figure. The first is not called "train" because the log already uses "train/"
    for the running means of the training loss and metrics.
    """

    name = "counting"
    metric_name = "accuracy"
    higher_is_better = True
    splits = ("train_images", "test")

    def __init__(self, options: TaskOptions):
        super().__init__(options)
        self.latent_size = options.latent_size or DEFAULT_LATENT_SIZE
        self.hidden_size = options.hidden_size or DEFAULT_HIDDEN_SIZE
        self.eval_size = options.eval_size or DEFAULT_EVAL_SIZE

        unknown = sorted(set(options.extra) - set(_EXTRA_OPTIONS))
        if unknown:
            raise ValueError(
                f"The counting task has no option {unknown[0]!r}; its options are {', '.join(_EXTRA_OPTIONS)}."
            )
        self.set_size = _positive_int_option(options.extra, "set_size", DEFAULT_SET_SIZE)
        self.max_count = _positive_int_option(options.extra, "max_count", DEFAULT_MAX_COUNT)
        if self.hidden_size < 4:
            raise ValueError(f"hidden_size must be at least 4, because the output network is [H / 4, K]; got {self.hidden_size}.")

        self._datasets: dict[str, ImageClassDataset] = {}
        self._eval_data: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._predict = eqx.filter_jit(_predict_batch)

    def dataset(self, split: str) -> ImageClassDataset:
        """Load the images of "train" or "test" on first use: Omniglot with `data_dir`, else digits."""
        if split not in self._datasets:
            if self.options.data_dir is None:
                self._datasets[split] = load_digits_dataset(split, IMAGE_SIZE)
            else:
                self._datasets[split] = load_omniglot(self.options.data_dir, split, IMAGE_SIZE)
        return self._datasets[split]

    def init(self, key):
        encoder_key, pooling_key, decoder_key = jax.random.split(key, 3)
        size, hidden = self.latent_size, self.hidden_size

        encoder = ConvEncoder(IMAGE_SIZE, 1, (16, 32, 64), size, key=encoder_key)
        if self.options.aggregation == "equilibrium":
            pooling = build_sum_of_squares_equilibrium(self.options, size, size, (hidden, hidden, 32), key=pooling_key)
        else:
            pooling = build_pooling(self.options, size, size, key=pooling_key)
        decoder = ResNetMLP(size, (hidden // 4, self.max_count), key=decoder_key)
        return SetModel(encoder, pooling, decoder), None

    def train_batch(self, seed, step, batch_size):
        rng = np.random.default_rng([seed, step])
        images, target = sample_counting_batch(rng, self.dataset("train"), batch_size, self.set_size, self.max_count)
        return {"images": images, "target": target}

    def loss(self, model, model_state, batch, key):
        del key
        logits, statistics = _predict_batch(model, batch["images"])
        cross_entropy, accuracy = counting_loss(logits, batch["target"])

        metrics = {"cross_entropy": cross_entropy, "accuracy": accuracy}
        loss = cross_entropy
        if statistics:
            metrics["residual"] = jnp.mean(statistics["residual"])
            metrics["aux_loss"] = jnp.mean(statistics["aux_loss"])
            loss = loss + self.options.aux_loss_weight * metrics["aux_loss"]
        return loss, (metrics, model_state)

    def evaluate(self, model, model_state, split):
        if split not in self.splits:
            raise ValueError(f"Unknown split {split!r}; the counting task has {', '.join(self.splits)}.")
        images, target = self._evaluation_sample(split)

        correct = 0
        cross_entropy = 0.0
        residuals = []
        for start in range(0, len(target), EVAL_CHUNK_SIZE):
            chunk = slice(start, start + EVAL_CHUNK_SIZE)
            logits, statistics = self._predict(model, images[chunk])
            chunk_cross_entropy, chunk_accuracy = counting_loss(logits, target[chunk])
            correct += float(chunk_accuracy) * len(target[chunk])
            cross_entropy += float(chunk_cross_entropy) * len(target[chunk])
            if statistics:
                residuals.append(np.asarray(statistics["residual"]))

        result = {"accuracy": correct / len(target), "cross_entropy": cross_entropy / len(target)}
        if residuals:
            result["residual"] = float(np.mean(np.concatenate(residuals)))
        return result

    def _evaluation_sample(self, split):
        if split not in self._eval_data:
            rng = np.random.default_rng(_SPLIT_SEEDS[split])
            self._eval_data[split] = sample_counting_batch(
                rng, self.dataset(_SPLIT_IMAGES[split]), self.eval_size, self.set_size, self.max_count
            )
        return self._eval_data[split]


def _predict_batch(model: SetModel, images):
    """Return count logits (B, K) for image sets (B, N, H, W, 1), and per-set statistics."""
    return jax.vmap(model)(images)


def _positive_int_option(extra, name: str, default: int) -> int:
    text = extra.get(name, default)
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {text!r}.") from None
    if value < 1:
        raise ValueError(f"{name} must be at least 1, got {value}.")
    return value
