# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # §5.6 Dropout
#
# An MLP with two wide hidden layers memorizes its training set. **Dropout** (Srivastava et al., 2014) zeroes
# each hidden unit with probability $p$ during training and scales the survivors by $1/(1-p)$, so that the
# expected activation is unchanged: $E[h'] = h$. No unit can rely on a particular other unit being there, and
# the network is pushed toward redundant, smoother functions. At test time dropout is switched off: the network
# computes the expectation.
#
# This notebook shows regjax's dropout (the lesson: a pure function of an explicit key), checks it against
# Flax's, trains D2L's 784-256-256-10 MLP with and without it through the engine, and redraws the book's curves.
# Run it small with `REGJAX_QUICK=1` (seconds); without, it runs at the book's size.

# %%
# %matplotlib inline
import inspect
import os

import jax
import jax.numpy as jnp
import numpy as np
from IPython.display import Code, display

import regjax as rj
from regjax.data import load_images, prepare_images
from regjax.engine import fit
from regjax.models.adapters import mlp_model
from regjax.plots import LiveCurves, curves_figure

QUICK = os.environ.get("REGJAX_QUICK") == "1"  # the test suite's small size

# %% [markdown]
# ## Dropout from scratch
#
# The function the engine trains with, as regjax defines it. The key is an argument: the same key gives the
# same mask, and the training step draws a fresh key for every step (`fold_in(key, step)`) and every layer.

# %%
display(Code(inspect.getsource(rj.dropout), language="python"))

# %% [markdown]
# Its two promises, checked: every element is 0 or $x/(1-p)$, and the mean is kept. With `train=False` it is the
# identity.

# %%
x = jnp.ones((1000, 100))
y = rj.dropout(x, 0.2, key=jax.random.key(0), train=True)
print("values taken:", np.unique(np.asarray(y)))                # 0 and 1 / 0.8
print("fraction dropped:", float((y == 0).mean()))              # about 0.2
print("mean:", float(y.mean()))                                 # about 1
print("eval mode is the identity:", bool((rj.dropout(x, 0.2, train=False) == x).all()))

# %% [markdown]
# ## The same layer in Flax
#
# `flax.linen.Dropout(rate)` means the same thing (the rate of *dropping*) and scales the same way; its masks come
# from its own use of the key, so the masks differ while their statistics agree.

# %%
from flax import linen as nn

flax_y = nn.Dropout(0.2, deterministic=False).apply({}, x, rngs={"dropout": jax.random.key(0)})
print("Flax: values", np.unique(np.asarray(flax_y)), "fraction dropped", float((flax_y == 0).mean()))

# %% [markdown]
# ## D2L's MLP with dropout
#
# The scratch MLP applies `rj.dropout` after each hidden layer, with the layer's own key `fold_in(key, i)`:

# %%
from regjax.models import scratch

display(Code(inspect.getsource(scratch.mlp_layers), language="python"))

# %% [markdown]
# The data: Fashion-MNIST where it can be had; offline, regjax says so and uses scikit-learn's 8x8 digits instead
# (1,347 training images), with as many epochs as give the SGD steps of D2L's 10 Fashion-MNIST epochs.

# %%
ds = load_images()
data = prepare_images(ds, flatten=True, train_size=512 if QUICK else None)
n_train, num_inputs = data[0].shape
book_steps = 10 * -(-60000 // 256)                               # D2L: 10 epochs of Fashion-MNIST at batch 256
epochs = 10 if ds.name == "fashion_mnist" else -(-book_steps // -(-n_train // 256))
if QUICK:
    epochs = 3
print(f"{ds.name}: {n_train} training images of {num_inputs} pixels, {epochs} epochs")

# %% [markdown]
# Training goes through `regjax.engine.fit`: each epoch is one compiled `lax.scan` of the step (the loss, its
# gradient, the SGD update). `LiveCurves` is D2L's `Animator`: it redraws the curves after every epoch.

# %%
histories = {}
for name, rates in (("dropout 0.2/0.5", (0.2, 0.5)), ("no dropout", (0.0, 0.0))):
    model = mlp_model("scratch", num_inputs, (256, 256), 10, rates=rates)          # N(0, 0.01²) weights
    _, histories[name] = fit(model, rj.scratch_sgd(0.5), data, epochs=epochs, batch_size=256,
                             key=jax.random.key(0), on_epoch=LiveCurves(epochs, name, every=max(1, epochs // 20)))
    print(name, histories[name])

# %% [markdown]
# ## The book's figure
#
# Training and test loss and accuracy against the epoch, for both networks (D2L §5.6 draws the dropout one).

# %%
curves_figure(histories, f"D2L §5.6 on {ds.name}")

# %% [markdown]
# **What to expect.** D2L reports a test accuracy of about 0.85–0.88 on Fashion-MNIST after 10 epochs. On the
# digits fallback the full-size run (392 epochs) reaches **0.978 with dropout and 0.969 without**, the same
# numbers as `python experiments/dropout_mlp.py --compare` (2-core CPU). With `REGJAX_QUICK=1` the networks
# barely start to learn: three epochs of two batches.

# %%
for name, h in histories.items():
    print(f"{name}: test accuracy {h.final()['test_accuracy']:.4f}, train accuracy {h.final()['train_accuracy']:.4f}")

# %% [markdown]
# ## The two editions
#
# The Chinese edition (and English r0.17), regjax's default: rates 0.2 / 0.5, SGD lr 0.5, weights N(0, 0.01²).
# The current English edition: rates 0.5 / 0.5, lr 0.1, Flax's LeCun-normal initializer.
# `python experiments/dropout_mlp.py --preset en` trains the latter.
#
# ## Exercises
#
# All seven of §5.6's exercises are answered with data on the [exercise page](../docs/exercises/chapter-5.md#56-dropout):
# switching the two rates, more epochs, the variance of the activations, dropout at test time, dropout and weight
# decay together, DropConnect, Gaussian noise.
