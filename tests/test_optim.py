import chex
import jax
import jax.numpy as jnp
import optax
import pytest

import regjax as rj
from regjax.models import scratch

LAM, LR, STEPS = 0.1, 0.05, 150


def _problem():
    kx, kw, kp = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(kx, (64, 20))
    y = x @ jax.random.normal(kw, (20,)) + 1.0
    params = scratch.init_linreg(kp, 20, weight_init="xavier")
    params = jax.tree_util.tree_map(lambda p: p + 0.5, params)  # nonzero bias: must not be decayed

    def data_loss(p, xb, yb):
        return jnp.mean(rj.squared_loss(scratch.linreg(p, xb), yb))

    return params, x, y, data_loss


def _batches(x, y, step):
    i = (step * 8) % 64
    return x[i:i + 8], y[i:i + 8]


def _run_penalty(params, x, y, data_loss, tx=None):
    """Explicit-penalty trajectory; scratch SGD if tx is None else the given (decay-free) optax transform."""
    loss = rj.penalized(data_loss, LAM)
    state = None if tx is None else tx.init(params)
    grad = jax.jit(jax.grad(loss))
    traj = []
    for s in range(STEPS):
        g = grad(params, *_batches(x, y, s))
        if tx is None:
            params = rj.sgd_step(params, g, LR)
        else:
            u, state = tx.update(g, state, params)
            params = optax.apply_updates(params, u)
        traj.append(params)
    return traj


def _run_optax(params, x, y, data_loss, tx):
    state = tx.init(params)
    grad = jax.jit(jax.grad(data_loss))
    traj = []
    for s in range(STEPS):
        g = grad(params, *_batches(x, y, s))
        u, state = tx.update(g, state, params)
        params = optax.apply_updates(params, u)
        traj.append(params)
    return traj


def _max_diff(ta, tb):
    return max(
        float(jnp.max(jnp.abs(a - b)))
        for pa, pb in zip(ta, tb)
        for a, b in zip(jax.tree_util.tree_leaves(pa), jax.tree_util.tree_leaves(pb))
    )


def _to64(tree):
    return jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), tree)


@pytest.mark.parametrize("momentum", [None, 0.9])
def test_explicit_penalty_equals_decayed_sgd_trajectory_float64(x64, momentum):
    params, x, y, data_loss = _problem()
    params, x, y = _to64(params), _to64(x), _to64(y)
    explicit = _run_penalty(params, x, y, data_loss, None if momentum is None else optax.sgd(LR, momentum))
    decayed = _run_optax(params, x, y, data_loss, rj.decayed_sgd(LR, LAM, momentum=momentum))
    assert _max_diff(explicit, decayed) < 1e-10
    chex.assert_trees_all_close(explicit[-1], decayed[-1], rtol=0, atol=1e-10)  # same tree, not only leaves
    # ...and the bias was not decayed: with λ huge and no data gradient it would vanish otherwise.
    assert float(jnp.abs(decayed[-1]["dense0"]["bias"][0])) > 0.5


def test_explicit_penalty_equals_decayed_sgd_float32():
    params, x, y, data_loss = _problem()
    explicit = _run_penalty(params, x, y, data_loss)
    decayed = _run_optax(params, x, y, data_loss, rj.decayed_sgd(LR, LAM))
    assert _max_diff(explicit, decayed) < 1e-5
    chex.assert_trees_all_close(explicit[-1], decayed[-1], rtol=0, atol=1e-5)


def test_adam_l2_and_adamw_differ_clearly():
    params, x, y, data_loss = _problem()
    l2 = _run_optax(params, x, y, data_loss, rj.adam_l2(LR, LAM))
    w = _run_optax(params, x, y, data_loss, rj.adamw(LR, LAM))
    diff = _max_diff(l2[-1:], w[-1:])
    scale = float(jnp.max(jnp.abs(w[-1]["dense0"]["kernel"])))
    assert diff > 0.05 * scale, (diff, scale)


def test_wrong_order_makes_weights_grow():
    params = {"w": {"kernel": jnp.ones((3, 3))}}
    zero_grads = jax.tree_util.tree_map(jnp.zeros_like, params)
    for tx, grows in ((rj.decayed_sgd(0.1, 0.5), False),
                      (optax.chain(optax.sgd(0.1), optax.add_decayed_weights(0.5)), True)):
        p, s = params, tx.init(params)
        for _ in range(10):
            u, s = tx.update(zero_grads, s, p)
            p = optax.apply_updates(p, u)
        norm = float(jnp.linalg.norm(p["w"]["kernel"]))
        assert (norm > 3.0) == grows  # ‖ones(3,3)‖ = 3


def test_negative_weight_decay_raises():
    for make in (rj.decayed_sgd, rj.adam_l2, rj.adamw):
        with pytest.raises(ValueError, match="weight_decay"):
            make(0.1, -1.0)


@pytest.mark.parametrize("lr", [0.5, 0.1, 0.003, 1e30])
def test_scratch_sgd_is_the_lesson_sgd_step_bit_for_bit_eager_and_under_jit(lr):
    """The engine's optimizer path (an optax transformation, its update added by optax.apply_updates) computes
    what the lesson's sgd_step computes, to the last bit -- eagerly, and under jit, where XLA fuses each into one
    multiply-add. The learning rate injected as the engine does (hparams['lr']) gives the same bits."""
    kw, kg = jax.random.split(jax.random.key(7))
    params = {"dense0": {"kernel": jax.random.normal(kw, (64, 32)), "bias": jnp.linspace(-1.0, 1.0, 32)}}
    grads = jax.tree_util.tree_map(lambda p: jax.random.normal(kg, p.shape) * 3.0, params)
    opt = rj.scratch_sgd(lr)

    def through_optax(p, g):
        updates, _ = opt.update(g, opt.init(p), p)
        return optax.apply_updates(p, updates)

    def injected(p, g, rate):
        state = opt.init(p)
        state = state._replace(hyperparams={**state.hyperparams, "learning_rate": rate})
        return optax.apply_updates(p, opt.update(g, state, p)[0])

    rate = jnp.float32(lr)
    for name, ours, lesson in (
            ("eager", through_optax(params, grads), rj.sgd_step(params, grads, lr)),
            ("jit", jax.jit(through_optax)(params, grads), jax.jit(rj.sgd_step)(params, grads, rate)),
            ("jit, lr injected", jax.jit(injected)(params, grads, rate), jax.jit(rj.sgd_step)(params, grads, rate))):
        chex.assert_trees_all_equal(ours, lesson, custom_message=name)
    assert rj.scratch_sgd(lr) is opt  # one object per learning rate: runs at one lr share their compiled programs
    with pytest.raises(ValueError, match=r"lr must be in \(0.0, inf\)"):
        rj.scratch_sgd(0.0)
