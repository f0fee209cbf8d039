"""Median estimation: predict the median of a set of 100 numbers.

Each set is drawn from a Uniform, Gamma or Normal distribution with fixed parameters (see
`eqagg_implicit.data.median`). Following Equilibrium Aggregation (Bartunov, Fuchs and
Lillicrap, UAI 2022), the pooling baselines embed every number with a fully connected ResNet
of layer sizes [H, H, D] and pool the embeddings into a D-dimensional vector. Equilibrium
aggregation skips the encoder: its potential is a ResNet of layer sizes [H, H, 1] on the
D + 1 inputs [y, x_i], minimised by 5 gradient steps. Every model maps the pooled vector to
the prediction with an output network of layer sizes [D, H / 2, 1]. The paper uses H = 256.
The loss is the squared error and the metric is the mean squared error on a fixed sample.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from eqagg_implicit.data.median import sample_median_batch
from eqagg_implicit.models import ResNetMLP, SetModel
from eqagg_implicit.training import AbstractTask, TaskOptions, build_pooling

DEFAULT_LATENT_SIZE = 16
DEFAULT_HIDDEN_SIZE = 256
DEFAULT_SET_SIZE = 100
DEFAULT_EVAL_SIZE = 10_000
EVAL_CHUNK_SIZE = 1000

# Evaluation samples come from fixed integer seeds, while training batches come from
# generators seeded by the sequence [seed, step], so the two streams differ.
_SPLIT_SEEDS = {"validation": 1_000_001, "test": 1_000_002}


class MedianTask(AbstractTask):
    """The median estimation task.

    Options: `latent_size` is D (default 16), `hidden_size` is H (default 256), `eval_size`
    is the number of sets per evaluation split (default 10000), and `--option set_size=N`
    changes the set size from 100.
    """

    name = "median"
    metric_name = "mse"
    higher_is_better = False
    splits = ("validation", "test")

    def __init__(self, options: TaskOptions):
        super().__init__(options)
        self.latent_size = options.latent_size or DEFAULT_LATENT_SIZE
        self.hidden_size = options.hidden_size or DEFAULT_HIDDEN_SIZE
        self.eval_size = options.eval_size or DEFAULT_EVAL_SIZE

        unknown = set(options.extra) - {"set_size"}
        if unknown:
            raise ValueError(f"The median task has no option {sorted(unknown)[0]!r}; the only one is set_size.")
        try:
            self.set_size = int(options.extra.get("set_size", DEFAULT_SET_SIZE))
        except ValueError:
            raise ValueError(f"set_size must be an integer, got {options.extra['set_size']!r}.") from None
        if self.set_size < 1:
            raise ValueError(f"set_size must be at least 1, got {self.set_size}.")

        self._eval_data: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def init(self, key):
        encoder_key, pooling_key, decoder_key = jax.random.split(key, 3)
        size, hidden = self.latent_size, self.hidden_size

        if self.options.aggregation == "equilibrium":
            encoder = None
            pooling = build_pooling(
                self.options, 1, size, key=pooling_key, potential_sizes=(hidden, hidden, 1)
            )
        else:
            encoder = ResNetMLP(1, (hidden, hidden, size), key=encoder_key)
            pooling = build_pooling(self.options, size, size, key=pooling_key)

        decoder = ResNetMLP(size, (size, max(hidden // 2, 1), 1), key=decoder_key)
        return SetModel(encoder, pooling, decoder), None

    def train_batch(self, seed, step, batch_size):
        rng = np.random.default_rng([seed, step])
        x, y = sample_median_batch(rng, batch_size, self.set_size)
        return {"x": x, "y": y}

    def loss(self, model, model_state, batch, key):
        del key
        prediction, statistics = _predict_batch(model, batch["x"])
        mse = jnp.mean((prediction - batch["y"]) ** 2)

        metrics = {"mse": mse}
        loss = mse
        if statistics:
            metrics["residual"] = jnp.mean(statistics["residual"])
            metrics["aux_loss"] = jnp.mean(statistics["aux_loss"])
            loss = loss + self.options.aux_loss_weight * metrics["aux_loss"]
        return loss, (metrics, model_state)

    def evaluate(self, model, model_state, split):
        if split not in self.splits:
            raise ValueError(f"Unknown split {split!r}; the median task has {', '.join(self.splits)}.")
        x, y = self._evaluation_sample(split)

        squared_error = 0.0
        residuals = []
        for start in range(0, len(y), EVAL_CHUNK_SIZE):
            prediction, statistics = _predict_jit(model, x[start : start + EVAL_CHUNK_SIZE])
            squared_error += float(jnp.sum((prediction - y[start : start + EVAL_CHUNK_SIZE]) ** 2))
            if statistics:
                residuals.append(np.asarray(statistics["residual"]))

        result = {"mse": squared_error / len(y)}
        if residuals:
            result["residual"] = float(np.mean(np.concatenate(residuals)))
        return result

    def _evaluation_sample(self, split):
        if split not in self._eval_data:
            rng = np.random.default_rng(_SPLIT_SEEDS[split])
            self._eval_data[split] = sample_median_batch(rng, self.eval_size, self.set_size)
        return self._eval_data[split]


def _predict_batch(model: SetModel, x):
    """Predict the median of every set in `x` (B, N, 1); returns (B,) and per-set statistics."""
    output, statistics = jax.vmap(model)(x)
    return output[:, 0], statistics


# Shared by every task instance, so that runs with the same model shapes compile it once.
_predict_jit = eqx.filter_jit(_predict_batch)
