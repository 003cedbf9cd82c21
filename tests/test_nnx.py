"""Flax NNX beside scratch and linen: the same models, equal given the same parameters (eval outputs, gradients,
train-mode BatchNorm outputs and statistics in both layouts), dropout the NNX way (keys from ``nnx.Rngs``, a new
mask every step and every layer, eval through ``nnx.view`` -- also after a jitted training call), and trained by
the regjax engine unchanged (a sweep member equals the run alone; a resumed run equals the uninterrupted one)."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from regjax.engine import fit, grid, sweep
from regjax.losses import softmax_cross_entropy
from regjax.models import nnx as nnx_models
from regjax.models.adapters import canonical_impl, lenet_bn_model, mlp_model, nnx_model
from regjax.optim import decayed_sgd
from tests.helpers import load_experiment

IMPLS = ("scratch", "linen", "nnx")


def _close(a, b, atol):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=atol)


def _loss(model, params, state, x, y, train):
    logits, new_state = model.apply(params, state, x, key=None, train=train)
    return jnp.mean(softmax_cross_entropy(logits, y)), new_state


def _value_and_grad(model, train):
    """``(loss, new_state), grads`` of ``model`` at ``(params, state, x, y)``, compiled (one program, not op by op)."""
    return jax.jit(jax.value_and_grad(lambda p, s, x, y: _loss(model, p, s, x, y, train), has_aux=True))


def test_the_three_mlps_agree_given_the_same_parameters():
    models = {impl: mlp_model(impl, 12, (16, 16), 3, (0.2, 0.5)) for impl in IMPLS}
    params, state = models["scratch"].init(jax.random.key(0))
    # one parameter layout: NNX's own init has the scratch dict's structure
    assert jax.tree_util.tree_structure(models["nnx"].init(jax.random.key(0))[0]) == jax.tree_util.tree_structure(params)
    x, y = jax.random.normal(jax.random.key(1), (8, 12)), jnp.arange(8) % 3
    outputs = {i: jax.jit(lambda p, s, v, m=m: m.apply(p, s, v, key=None, train=False)[0])(params, state, x)
               for i, m in models.items()}
    grads = {i: _value_and_grad(m, False)(params, state, x, y)[1] for i, m in models.items()}
    for impl in ("linen", "nnx"):
        np.testing.assert_array_equal(outputs[impl], outputs["scratch"])  # eval: the same function
        _close(grads[impl], grads["scratch"], atol=1e-7)


@pytest.mark.parametrize("use_bn", [True, False])
def test_the_three_lenets_agree_in_eval_and_in_a_training_step(use_bn):
    models = {impl: lenet_bn_model(impl, 3, (16, 16, 1), use_bn=use_bn) for impl in IMPLS}
    full_params, full_state = models["scratch"].init(jax.random.key(0))
    # without BN, linen and NNX build no BN layers; scratch keeps unused ones (and no BN update)
    own = {impl: (full_params, full_state) if use_bn or impl == "scratch" else
           ({k: v for k, v in full_params.items() if not k.startswith("bn")}, {}) for impl in IMPLS}
    x, y = jax.random.uniform(jax.random.key(1), (6, 16, 16, 1)), jnp.arange(6) % 3
    evals, steps = {}, {}
    for impl, model in models.items():
        params, state = own[impl]
        evals[impl] = jax.jit(lambda p, s, v, m=model: m.apply(p, s, v, key=None, train=False)[0])(params, state, x)
        (loss, new_state), grads = _value_and_grad(model, True)(params, state, x, y)  # a training step's pieces
        steps[impl] = (loss, new_state if use_bn else {}, {k: v for k, v in grads.items() if use_bn or "bn" not in k})
    for impl in ("linen", "nnx"):
        np.testing.assert_allclose(evals[impl], evals["scratch"], rtol=1e-6, atol=1e-6)  # moving statistics
        # training: BN over the batch -- over N (dense layers) and N, H, W (convolutions): both layouts
        np.testing.assert_allclose(steps[impl][0], steps["scratch"][0], rtol=1e-5)
        _close(steps[impl][1], steps["scratch"][1], atol=1e-6)
        _close(steps[impl][2], steps["scratch"][2], atol=1e-5)


def test_nnx_batch_norm_follows_d2l():
    module = nnx_models.LeNetBN(10, (28, 28, 1), rngs=nnx.Rngs(0))
    assert module.bn0.momentum == 0.9 and module.bn0.epsilon == 1e-5  # NNX's default momentum is 0.99


def _hidden_after_two_dropouts(key, p=0.5, width=4096):
    """The output of an NNX DropoutMLP whose dense layers pass values through unchanged (identity kernels, zero
    biases, positive inputs): ones * mask0/(1-p) * mask1/(1-p), the two layers' masks composed."""
    model = mlp_model("nnx", width, (width, width), width, (p, p))
    eye = {"kernel": jnp.eye(width), "bias": jnp.zeros(width)}
    params = {"dense0": eye, "dense1": eye, "dense2": eye}
    return model.apply(params, {}, jnp.ones((1, width)), key=key, train=True)[0][0]


def test_nnx_dropout_masks_differ_between_layers_and_steps_and_keep_the_scale():
    p, width = 0.5, 4096
    out = np.asarray(_hidden_after_two_dropouts(jax.random.key(0), p, width))
    # each element is 0 or 1/(1-p)^2; with independent masks 3/4 of them are 0, with one shared mask 1/2
    assert set(np.unique(out).tolist()) <= {0.0, 1.0 / (1 - p) ** 2}
    zeros = (out == 0).mean()
    assert abs(zeros - 0.75) < 5 * np.sqrt(0.75 * 0.25 / width), zeros  # 5 standard errors: never flakes
    # another step's key (the engine's fold_in(key, step)) draws other masks
    other = np.asarray(_hidden_after_two_dropouts(jax.random.key(1), p, width))
    assert (other != out).mean() > 0.25


def test_eval_after_a_jitted_training_call_really_is_eval():
    """The bug class of a mode flag kept on the module object: a compiled function that keeps the training
    behaviour when called for evaluation. Modes here come from nnx.view (a new view) or the engine's static
    train argument, never from a flag mutated in place."""
    model = mlp_model("nnx", 12, (64, 64), 3, (0.5, 0.5))
    params, state = model.init(jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (4, 12))
    apply = jax.jit(model.apply, static_argnames="train")
    reference = model.apply(params, state, x, key=None, train=False)[0]
    trained = apply(params, state, x, key=jax.random.key(2), train=True)[0]
    assert not np.allclose(trained, reference)  # training: masks
    np.testing.assert_array_equal(apply(params, state, x, key=jax.random.key(3), train=False)[0], reference)
    # the idiomatic NNX way: two views of one module through one nnx.jit-compiled function
    module = nnx_models.DropoutMLP(12, (64, 64), 3, (0.5, 0.5), rngs=nnx.Rngs(0))
    forward = nnx.jit(lambda m, v, rngs: m(v, rngs=rngs))
    train_view = nnx.view(module, deterministic=False)
    eval_view = nnx.view(module, deterministic=True)
    first = forward(train_view, x, nnx.Rngs(dropout=4))
    assert not np.allclose(first, forward(eval_view, x, nnx.Rngs(dropout=4)))
    np.testing.assert_array_equal(forward(eval_view, x, nnx.Rngs(dropout=5)), forward(eval_view, x, nnx.Rngs(dropout=6)))
    assert module.dropout0.deterministic is False  # the module itself was never switched


def test_an_nnx_model_in_a_sweep_equals_the_same_model_trained_alone():
    model = mlp_model("nnx", 12, (16, 16), 3, (0.2, 0.5), "he")
    x = jax.random.normal(jax.random.key(10), (96, 12))
    y = jnp.argmax(x[:, :3], axis=1).astype(jnp.int32)
    data = (x[:64], y[:64], x[64:], y[64:])
    optimizer = decayed_sgd(0.1, 0.0)  # lr and λ injected: both swept
    members = grid(seeds=[0, 1], weight_decay=[0.0, 0.01], lr=[0.1, 0.3])
    result = sweep(model, optimizer, data, members, epochs=3, batch_size=16)
    for i, config in enumerate(members.configs):
        state, history = fit(model, optimizer, data, epochs=3, batch_size=16, key=jax.random.key(config["seed"]),
                             hparams={"weight_decay": config["weight_decay"], "lr": config["lr"]})
        _close(jax.tree_util.tree_map(lambda a: a[i], result.state.params), state.params, atol=1e-6)
        np.testing.assert_allclose(result.history.metric("test_loss")[:, i], history.test_loss[0], rtol=1e-5)


def test_the_cli_trains_nnx_resumes_it_bit_for_bit_and_takes_flax_for_linen(tmp_path):
    argv = ["--dataset", "digits", "--hidden", "32", "32", "--quiet"]
    main = load_experiment("dropout_mlp").main
    main(argv + ["--impl", "nnx", "--epochs", "2", "--out", str(tmp_path / "a")])
    resumed = main(argv + ["--impl", "nnx", "--epochs", "4", "--out", str(tmp_path / "a"), "--resume"])
    straight = main(argv + ["--impl", "nnx", "--epochs", "4", "--out", str(tmp_path / "b")])
    assert resumed == straight  # every float of the final metrics
    a, b = (json.loads((tmp_path / d / "results.json").read_text()) for d in ("a", "b"))
    assert a["history"]["dropout"]["test_loss"] == b["history"]["dropout"]["test_loss"] and a["resumed"] is True
    assert a["config"]["impl"] == "nnx"
    main(argv + ["--impl", "flax", "--epochs", "1", "--out", str(tmp_path / "c")])
    assert json.loads((tmp_path / "c" / "results.json").read_text())["config"]["impl"] == "linen"
    assert canonical_impl("flax") == "linen"
    with pytest.raises(ValueError, match="impl must be one of"):
        canonical_impl("haiku")


def test_an_nnx_module_with_rng_state_inside_is_refused():
    class Keeps(nnx.Module):
        def __init__(self, rngs):
            self.dense0 = nnx.Linear(2, 2, rngs=rngs)
            self.dropout0 = nnx.Dropout(0.5, rngs=rngs)  # keeps an Rngs stream: state the engine would not carry

        def __call__(self, x, *, rngs=None):
            return self.dropout0(self.dense0(x), rngs=rngs)

    with pytest.raises(ValueError, match="keeps no state but nnx.Param and nnx.BatchStat"):
        nnx_model(lambda rngs: Keeps(rngs))
